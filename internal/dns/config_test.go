package dns

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := DefaultConfig()
	if d.Addr != "127.0.0.1:8600" || d.Domain != "wolke." || d.UDPAnswerLimit != 3 || d.NodeTTL != 0 ||
		d.ServiceTTL != 0 || d.OnlyPassing || d.RecursorTimeout != 2*time.Second || !d.EnableTruncate ||
		d.SOA != (SOAConfig{Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0}) {
		t.Errorf("defaults changed: %+v", d)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // part of the error; "" means valid
	}{
		{"port 0", func(c *Config) { c.Addr = "127.0.0.1:0" }, ""},
		{"IPv6", func(c *Config) { c.Addr = "[::1]:53" }, ""},
		{"domain without dot", func(c *Config) { c.Domain = "consul" }, ""},
		{"no port", func(c *Config) { c.Addr = "127.0.0.1" }, "addr"},
		{"bad port", func(c *Config) { c.Addr = "127.0.0.1:70000" }, "addr"},
		{"empty domain", func(c *Config) { c.Domain = "." }, "domain is empty"},
		{"bad domain", func(c *Config) { c.Domain = "a..b" }, "not a domain name"},
		{"negative TTL", func(c *Config) { c.NodeTTL = -time.Second }, "node TTL"},
		{"huge TTL", func(c *Config) { c.ServiceTTL = 1 << 62 }, "service TTL"},
		{"answer limit 0", func(c *Config) { c.UDPAnswerLimit = 0 }, "answer limit"},
		{"answer limit 9", func(c *Config) { c.UDPAnswerLimit = 9 }, "answer limit"},
		{"bad recursor", func(c *Config) { c.Recursors = []string{"1.2.3.4:99999"} }, "recursor"},
		{"empty recursor", func(c *Config) { c.Recursors = []string{""} }, "recursor"},
		{"recursor timeout", func(c *Config) { c.RecursorTimeout = 0 }, "recursor timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one about %q", err, tc.want)
			}
		})
	}
	// Every problem is reported.
	c := DefaultConfig()
	c.Addr, c.UDPAnswerLimit = "x", 0
	if err := c.Validate(); err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("two problems, error %q", err)
	}
}

func TestRecursorAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"8.8.8.8", "8.8.8.8:53"},
		{"8.8.8.8:5353", "8.8.8.8:5353"},
		{"::1", "[::1]:53"},
		{"[::1]", "[::1]:53"},
		{"[::1]:54", "[::1]:54"},
		{"dns.example", "dns.example:53"},
		{"dns.example:54", "dns.example:54"},
		{"bad host", ""},
		{"", ""},
	} {
		got, err := recursorAddr(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("recursorAddr(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("recursorAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

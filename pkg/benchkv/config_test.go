package benchkv

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; empty for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"put", func(c *Config) { c.Workload = WorkloadPut }, ""},
		{"mixed all reads", func(c *Config) { c.Workload, c.ReadShare = WorkloadMixed, 1 }, ""},
		{"zero value size", func(c *Config) { c.ValueSize = 0 }, ""},
		{"no warm-up", func(c *Config) { c.Warmup = 0 }, ""},
		{"preload concurrency unused by put", func(c *Config) { c.Workload, c.PreloadConcurrency = WorkloadPut, 0 }, ""},
		{"unknown workload", func(c *Config) { c.Workload = "delete" }, `workload "delete"`},
		{"workload not canonical", func(c *Config) { c.Workload = "PUT" }, `workload "PUT"`},
		{"read share above 1", func(c *Config) { c.Workload, c.ReadShare = WorkloadMixed, 1.5 }, "read share 1.5"},
		{"read share negative", func(c *Config) { c.Workload, c.ReadShare = WorkloadMixed, -0.1 }, "read share -0.1"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency 0"},
		{"huge concurrency", func(c *Config) { c.Concurrency = MaxConcurrency + 1 }, "concurrency 10001"},
		{"zero duration", func(c *Config) { c.Duration = 0 }, "duration 0s"},
		{"negative warm-up", func(c *Config) { c.Warmup = -time.Second }, "warm-up -1s"},
		{"value too large", func(c *Config) { c.ValueSize = MaxValueSize + 1 }, "value size 524289"},
		{"negative value size", func(c *Config) { c.ValueSize = -1 }, "value size -1"},
		{"no keys", func(c *Config) { c.KeyCount = 0 }, "key count 0"},
		{"too many keys", func(c *Config) { c.KeyCount = MaxKeyCount + 1 }, "key count 10000001"},
		{"leading slash", func(c *Config) { c.KeyPrefix = "/bench/" }, `key prefix "/bench/"`},
		{"keys too long", func(c *Config) { c.KeyPrefix = strings.Repeat("k", 510) }, "over the limit of 512"},
		{"unknown read mode", func(c *Config) { c.ReadMode = "fresh" }, `read mode "fresh"`},
		{"preload without writers", func(c *Config) { c.PreloadConcurrency = 0 }, "preload concurrency 0"},
		{"no progress interval", func(c *Config) { c.ProgressInterval = 0 }, "progress interval 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := DefaultConfig()
	c.Concurrency, c.ValueSize = 0, -1
	err := c.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("Validate() = %v, want two lines", err)
	}
}

func TestConfigKeys(t *testing.T) {
	tests := []struct {
		prefix      string
		n           int
		first, last string
	}{
		{"b/", 1, "b/0", "b/0"},
		{"b/", 10, "b/0", "b/9"},
		{"b/", 11, "b/00", "b/10"},
		{"", 1000, "000", "999"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.KeyPrefix, c.KeyCount = tt.prefix, tt.n
		keys := c.Keys()
		if len(keys) != tt.n || keys[0] != tt.first || keys[len(keys)-1] != tt.last {
			t.Errorf("Keys(%q, %d) = %d keys %q..%q, want %q..%q", tt.prefix, tt.n, len(keys), keys[0], keys[len(keys)-1], tt.first, tt.last)
		}
	}
}

func TestTextFlagValues(t *testing.T) {
	var w Workload
	var m ReadMode
	var f Format
	for _, tt := range []struct {
		v     interface{ UnmarshalText([]byte) error }
		in    string
		valid bool
	}{
		{&w, "mixed", true}, {&w, "Get", true}, {&w, "scan", false},
		{&m, "stale", true}, {&m, "CONSISTENT", true}, {&m, "", false},
		{&f, "json", true}, {&f, "yaml", false},
	} {
		if err := tt.v.UnmarshalText([]byte(tt.in)); (err == nil) != tt.valid {
			t.Errorf("UnmarshalText(%q) error = %v, want valid=%v", tt.in, err, tt.valid)
		}
	}
	if w != WorkloadGet || m != ReadConsistent || f != FormatJSON {
		t.Errorf("parsed %q %q %q", w, m, f)
	}
}

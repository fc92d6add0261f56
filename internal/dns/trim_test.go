package dns

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// bigCatalog has a service "big" of n instances on n nodes.
func bigCatalog(n int) *fakeCatalog {
	c := newFakeCatalog()
	for i := range n {
		c.addService("big", Instance{
			Node:        fmt.Sprintf("node-with-a-long-name-%03d", i),
			NodeAddress: fmt.Sprintf("10.2.%d.%d", i/250, i%250+1),
			Port:        8000 + i, Health: HealthPassing,
		})
	}
	return c
}

// checkExtraMatchesSRV checks that the additional section holds exactly one address
// record for each SRV target of the answer.
func checkExtraMatchesSRV(t *testing.T, r *dns.Msg) {
	t.Helper()
	targets := map[string]bool{}
	for _, rr := range r.Answer {
		targets[strings.ToLower(rr.(*dns.SRV).Target)] = true
	}
	seen := map[string]bool{}
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		if !targets[name] || seen[name] {
			t.Errorf("additional record %v has no SRV answer or is repeated", rr)
		}
		seen[name] = true
	}
	if len(seen) != len(targets) {
		t.Errorf("%d SRV targets but %d additional records", len(targets), len(seen))
	}
}

func TestTruncation(t *testing.T) {
	const n = 100
	s := startServer(t, bigCatalog(n), nil)
	for _, tc := range []struct {
		name      string
		qtype     uint16
		edns      uint16 // 0: no EDNS
		wantTC    bool
		maxSize   int
		wantCount func(int) bool
	}{
		// Without EDNS: Consul's UDP answer limit (3) and 512 bytes.
		{"A no EDNS", dns.TypeA, 0, true, 512, func(c int) bool { return c == 3 }},
		{"SRV no EDNS", dns.TypeSRV, 0, true, 512, func(c int) bool { return c == 3 }},
		// With EDNS: as many as the buffer takes, no answer limit.
		{"SRV EDNS 1232", dns.TypeSRV, 1232, true, 1232, func(c int) bool { return c > 3 && c < n }},
		{"A EDNS 1232", dns.TypeA, 1232, true, 1232, func(c int) bool { return c > 3 && c < n }},
		{"A EDNS 4096", dns.TypeA, 4096, false, 4096, func(c int) bool { return c == n }},
		// A buffer size below 512 counts as 512, without EDNS (Consul does the same).
		{"A EDNS 100", dns.TypeA, 100, true, 512, func(c int) bool { return c == 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("big.service.wolke.", tc.qtype)
			if tc.edns > 0 {
				m.SetEdns0(tc.edns, false)
			}
			size, r := rawExchange(t, s.Addr(), m)
			if size > tc.maxSize {
				t.Errorf("%d-byte response, limit %d", size, tc.maxSize)
			}
			if r.Truncated != tc.wantTC {
				t.Errorf("TC %v, want %v", r.Truncated, tc.wantTC)
			}
			if !tc.wantCount(len(r.Answer)) {
				t.Errorf("%d answers", len(r.Answer))
			}
			if r.Rcode != dns.RcodeSuccess {
				t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			if tc.edns > 0 && r.IsEdns0() == nil {
				t.Errorf("no OPT record in the answer to an EDNS query")
			}
			if tc.qtype == dns.TypeSRV {
				checkExtraMatchesSRV(t, r)
			}
		})
	}

	// TCP: everything.
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		r := query(t, "tcp", s.Addr(), "big.service.wolke.", qtype, 0)
		if len(r.Answer) != n || r.Truncated {
			t.Errorf("TCP %s: %d answers (TC %v), want all %d", dns.TypeToString[qtype], len(r.Answer), r.Truncated, n)
		}
		if qtype == dns.TypeSRV {
			checkExtraMatchesSRV(t, r)
		}
	}
}

func TestTruncationSettings(t *testing.T) {
	s := startServer(t, bigCatalog(20), func(c *Config) {
		c.EnableTruncate = false
		c.UDPAnswerLimit = 5
	})
	m := new(dns.Msg)
	m.SetQuestion("big.service.wolke.", dns.TypeA)
	_, r := rawExchange(t, s.Addr(), m)
	if len(r.Answer) != 5 || r.Truncated {
		t.Errorf("%d answers, TC %v: want 5 answers (the limit) without TC", len(r.Answer), r.Truncated)
	}

	// Reload: the new limit applies to the next query.
	rc := DefaultConfig().ReloadableConfig
	rc.UDPAnswerLimit = 1
	if err := s.Reload(rc); err != nil {
		t.Fatal(err)
	}
	_, r = rawExchange(t, s.Addr(), m)
	if len(r.Answer) != 1 || !r.Truncated {
		t.Errorf("after reload: %d answers, TC %v: want 1 answer with TC", len(r.Answer), r.Truncated)
	}
	rc.UDPAnswerLimit = 0
	if err := s.Reload(rc); err == nil {
		t.Error("reload with an invalid limit succeeded")
	}
}

// TestTrimKeepsOneAnswer: a single answer too large for 512 bytes is still sent (the
// client gets TC only if something was left out).
func TestTrimKeepsOneAnswer(t *testing.T) {
	c := newFakeCatalog()
	long := strings.Repeat("n", 63) + "." + strings.Repeat("o", 63) + "." + strings.Repeat("d", 63)
	c.addService("one", Instance{Node: long, NodeAddress: "10.0.0.1", Port: 1, Health: HealthPassing})
	c.addService("one", Instance{Node: "m" + long[1:], NodeAddress: "10.0.0.2", Port: 1, Health: HealthPassing})
	s, err := New(DefaultConfig(), c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := new(dns.Msg)
	req.SetQuestion("one.service.wolke.", dns.TypeSRV)
	w := &recorder{}
	s.ServeDNS(w, req)
	if len(w.msg.Answer) != 1 || !w.msg.Truncated || w.packed == nil {
		t.Errorf("%d answers, TC %v, packed %d bytes: want 1 answer with TC", len(w.msg.Answer), w.msg.Truncated, len(w.packed))
	}
}

package dns

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkServeDNS measures the handler alone (lookup, shuffle, records, trimming,
// packing) for a service of 20 instances: the server's CPU cost per query without the
// sockets. `wolke bench dns` measures the whole path.
func BenchmarkServeDNS(b *testing.B) {
	s, err := New(DefaultConfig(), bigCatalog(20), nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"A", dns.TypeA, 0}, {"SRV", dns.TypeSRV, 0}, {"SRV-EDNS4096", dns.TypeSRV, 4096},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := new(dns.Msg)
			req.SetQuestion("big.service.wolke.", tc.qtype)
			if tc.edns > 0 {
				req.SetEdns0(tc.edns, false)
			}
			w := &recorder{}
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(w, req)
			}
			if w.msg.Rcode != dns.RcodeSuccess || len(w.msg.Answer) == 0 {
				b.Fatalf("answer %v", w.msg)
			}
		})
	}
}

// TestServeForLoad serves a catalog of 20 instances of "web" (node0..node19) for
// `wolke bench dns` to measure, when WOLKE_DNS_BENCH_ADDR is set (skipped otherwise):
//
//	WOLKE_DNS_BENCH_ADDR=127.0.0.1:8600 go test -run TestServeForLoad -timeout 0 ./internal/dns/ &
//	wolke bench dns -server 127.0.0.1:8600 -name web.service.wolke. -type SRV -c 16 -d 10s
//
// It serves for WOLKE_DNS_BENCH_FOR (default 60s). With WOLKE_DNS_BENCH_BASELINE=1 it
// serves, as a floor to compare with, a bare miekg/dns handler that answers every query
// with one prebuilt response of the same records: the cost of the library and the
// sockets alone.
func TestServeForLoad(t *testing.T) {
	addr := os.Getenv("WOLKE_DNS_BENCH_ADDR")
	if addr == "" {
		t.Skip("WOLKE_DNS_BENCH_ADDR not set")
	}
	d := time.Minute
	if v := os.Getenv("WOLKE_DNS_BENCH_FOR"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	cat := newFakeCatalog()
	for i := range 20 {
		cat.addService("web", Instance{Node: fmt.Sprintf("node%d", i), NodeAddress: fmt.Sprintf("10.0.0.%d", i+1), Port: 8080, Health: HealthPassing})
	}
	if os.Getenv("WOLKE_DNS_BENCH_BASELINE") == "" {
		s := startServer(t, cat, func(c *Config) { c.Addr = addr })
		t.Logf("wolke DNS on %s for %v", s.Addr(), d)
		time.Sleep(d)
		return
	}
	s, err := New(DefaultConfig(), cat, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		qtype uint16
		edns  bool
		net   string
	}
	var cache sync.Map // key -> packed answer
	static := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		k := key{req.Question[0].Qtype, req.IsEdns0() != nil, w.RemoteAddr().Network()}
		v, ok := cache.Load(k)
		if !ok {
			r := &recorder{remote: w.RemoteAddr()}
			s.ServeDNS(r, req)
			v, _ = cache.LoadOrStore(k, r.packed)
		}
		out := append([]byte(nil), v.([]byte)...)
		out[0], out[1] = byte(req.Id>>8), byte(req.Id)
		w.Write(out)
	})
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: addr, Net: network, Handler: static, UDPSize: dns.MaxMsgSize, MaxTCPQueries: -1}
		go srv.ListenAndServe()
		defer srv.Shutdown()
	}
	t.Logf("baseline miekg/dns server on %s for %v", addr, d)
	time.Sleep(d)
}

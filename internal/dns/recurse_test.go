package dns

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a tiny DNS server standing in for a recursor: example.com. has an A
// record, everything else under example.com. is NXDOMAIN; with rcode set it answers
// every query with that code.
type upstream struct {
	addr  string
	rcode int
	hits  atomic.Int64
	nets  chan string
}

func startUpstream(t *testing.T, rcode int) *upstream {
	t.Helper()
	u := &upstream{rcode: rcode, nets: make(chan string, 100)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("no TCP port matching the UDP one: %v", err)
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.hits.Add(1)
		select {
		case u.nets <- w.RemoteAddr().Network():
		default:
		}
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		switch {
		case u.rcode != dns.RcodeSuccess:
			m.Rcode = u.rcode
		case req.Question[0].Name == "example.com.":
			rr, _ := dns.NewRR("example.com. 300 IN A 93.184.216.34")
			m.Answer = append(m.Answer, rr)
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// deadAddr is a UDP address where nothing answers (a bound socket never read).
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestRecursors(t *testing.T) {
	good := startUpstream(t, dns.RcodeSuccess)
	failing := startUpstream(t, dns.RcodeServerFailure)
	dead := deadAddr(t)
	for _, tc := range []struct {
		name      string
		recursors []string
		qname     string
		rcode     int
		answer    []string
	}{
		{"forwarded", []string{good.addr}, "example.com.", dns.RcodeSuccess, []string{"A 93.184.216.34"}},
		{"NXDOMAIN is relayed", []string{good.addr}, "nope.example.com.", dns.RcodeNameError, nil},
		{"SERVFAIL moves to the next", []string{failing.addr, good.addr}, "example.com.", dns.RcodeSuccess, []string{"A 93.184.216.34"}},
		{"timeout moves to the next", []string{dead, good.addr}, "example.com.", dns.RcodeSuccess, []string{"A 93.184.216.34"}},
		{"all fail: SERVFAIL", []string{failing.addr, dead}, "example.com.", dns.RcodeServerFailure, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, fixtureCatalog(), func(c *Config) {
				c.Recursors = tc.recursors
				c.RecursorTimeout = 100 * time.Millisecond
			})
			for _, network := range []string{"udp", "tcp"} {
				r := query(t, network, s.Addr(), tc.qname, dns.TypeA, 0)
				if r.Rcode != tc.rcode {
					t.Errorf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("%s: answer %q, want %q", network, got, tc.answer)
				}
				if !r.RecursionAvailable {
					t.Errorf("%s: RA not set with recursors", network)
				}
			}
			// The zone is still answered locally, with RA set.
			r := query(t, "udp", s.Addr(), "web.service.wolke.", dns.TypeA, 0)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 || !r.RecursionAvailable {
				t.Errorf("local answer with recursors: %v", r)
			}
		})
	}
}

func TestRecursorProtocolAndReload(t *testing.T) {
	up := startUpstream(t, dns.RcodeSuccess)
	s := startServer(t, fixtureCatalog(), nil)
	if r := query(t, "udp", s.Addr(), "example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeRefused || r.RecursionAvailable {
		t.Fatalf("without recursors: %s, RA %v; want REFUSED without RA", dns.RcodeToString[r.Rcode], r.RecursionAvailable)
	}
	rc := DefaultConfig().ReloadableConfig
	rc.Recursors = []string{up.addr}
	if err := s.Reload(rc); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, s.Addr(), "example.com.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s after reload: %v", network, r)
		}
		select {
		case got := <-up.nets:
			if got != network {
				t.Errorf("query over %s was forwarded over %s", network, got)
			}
		case <-time.After(time.Second):
			t.Fatal("upstream saw no query")
		}
	}
}

func TestShutdownStopsServing(t *testing.T) {
	s, err := New(func() Config { c := DefaultConfig(); c.Addr = "127.0.0.1:0"; return c }(), fixtureCatalog(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if r := query(t, "tcp", addr, "web.service.wolke.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Fatal(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Error("TCP still accepts connections after Shutdown")
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

package dns

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// lookupCase is one question and the response it must get.
type lookupCase struct {
	name    string
	qtype   uint16
	rcode   int
	answer  []string // rrStrings of the answer section; nil means empty
	extra   []string // namedStrings of the additional section (OPT excluded)
	soa     bool     // an SOA record in the authority section
	ansName string   // when set, every answer record must have this owner name
}

func runLookupCases(t *testing.T, s *Server, cases []lookupCase) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range cases {
			t.Run(network+"/"+tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				r := query(t, network, s.Addr(), tc.name, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode], r)
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("answer %q, want %q", got, tc.answer)
				}
				if tc.extra != nil {
					if got := namedStrings(r.Extra); !slices.Equal(got, tc.extra) {
						t.Errorf("extra %q, want %q", got, tc.extra)
					}
				}
				hasSOA := len(r.Ns) > 0 && r.Ns[0].Header().Rrtype == dns.TypeSOA
				if hasSOA != tc.soa {
					t.Errorf("SOA in authority: %v, want %v (%v)", hasSOA, tc.soa, r.Ns)
				}
				if r.Rcode != dns.RcodeRefused && !r.Authoritative {
					t.Errorf("AA not set")
				}
				if r.Truncated {
					t.Errorf("TC set on a small answer")
				}
				for _, rr := range r.Answer {
					if want := tc.ansName; want != "" && rr.Header().Name != want {
						t.Errorf("answer owner %q, want %q", rr.Header().Name, want)
					}
				}
			})
		}
	}
}

func TestLookups(t *testing.T) {
	s := startServer(t, fixtureCatalog(), nil)
	web := []string{"A 10.0.0.1", "A 10.0.0.2"}
	webSRV := []string{"SRV 1 1 8080 node1.node.dc1.wolke.", "SRV 1 1 8080 node2.node.dc1.wolke."}
	webExtra := []string{"node1.node.dc1.wolke. A 10.0.0.1", "node2.node.dc1.wolke. A 10.0.0.2"}
	runLookupCases(t, s, []lookupCase{
		// Services: passing and warning instances, never critical ones (node3).
		{name: "web.service.wolke.", qtype: dns.TypeA, answer: web, ansName: "web.service.wolke."},
		{name: "web.service.wolke.", qtype: dns.TypeANY, answer: web},
		{name: "web.service.wolke.", qtype: dns.TypeSRV, answer: webSRV, extra: webExtra},
		// Known name without the type: NOERROR, no answer, SOA.
		{name: "web.service.wolke.", qtype: dns.TypeAAAA, soa: true},
		{name: "web.service.wolke.", qtype: dns.TypeTXT, soa: true},
		{name: "web.service.wolke.", qtype: dns.TypeMX, soa: true},
		// Tags.
		{name: "v1.web.service.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}},
		{name: "v2.web.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 8080 node2.node.dc1.wolke."},
			extra: []string{"node2.node.dc1.wolke. A 10.0.0.2"}},
		{name: "nope.web.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		// RFC 2782.
		{name: "_web._tcp.service.wolke.", qtype: dns.TypeSRV, answer: webSRV, extra: webExtra, ansName: "_web._tcp.service.wolke."},
		{name: "_web._v1.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 8080 node1.node.dc1.wolke."}},
		{name: "_web._tcp.wolke.", qtype: dns.TypeSRV, answer: webSRV},
		{name: "_web._tcp.dc1.wolke.", qtype: dns.TypeSRV, answer: webSRV},
		// Datacenter label, case.
		{name: "web.service.dc1.wolke.", qtype: dns.TypeA, answer: web},
		{name: "web.service.dc1.dc.wolke.", qtype: dns.TypeA, answer: web},
		{name: "web.service.dc2.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "web.service.x.y.z.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "WeB.SeRvIcE.DC1.WOLKE.", qtype: dns.TypeA, answer: web, ansName: "WeB.SeRvIcE.DC1.WOLKE."},
		{name: "_WEB._TCP.Service.Wolke.", qtype: dns.TypeSRV, answer: webSRV},
		// Unknown names: NXDOMAIN with SOA. A service without a healthy instance too.
		{name: "nope.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "nope.service.wolke.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, soa: true},
		{name: "down.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "what.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		// Service address: SRV target is its .addr. name, which answers the address.
		{name: "api.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 10 9000 c0a8010a.addr.dc1.wolke."},
			extra: []string{"c0a8010a.addr.dc1.wolke. A 192.168.1.10"}},
		{name: "api.service.wolke.", qtype: dns.TypeA, answer: []string{"A 192.168.1.10"}},
		{name: "c0a8010a.addr.dc1.wolke.", qtype: dns.TypeA, answer: []string{"A 192.168.1.10"}},
		{name: "c0a8010a.addr.wolke.", qtype: dns.TypeAAAA, soa: true},
		{name: "20010db8000000000000000000000006.addr.wolke.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::6"}},
		{name: "zz.addr.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "zzzzzzzz.addr.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		// Weights: warning weight of a warning instance.
		{name: "warnonly.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 0 2 node2.node.dc1.wolke."}},
		// IPv6.
		{name: "v6.service.wolke.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::6"}},
		{name: "v6.service.wolke.", qtype: dns.TypeA, soa: true},
		{name: "v6.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 80 node6.node.dc1.wolke."},
			extra: []string{"node6.node.dc1.wolke. AAAA 2001:db8::6"}},
		// Host names: CNAME for addresses, the name itself as SRV target.
		{name: "ext.service.wolke.", qtype: dns.TypeA, answer: []string{"CNAME example.org."}},
		{name: "ext.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 443 example.org."}, extra: []string{}},
		// Nodes.
		{name: "node1.node.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}, ansName: "node1.node.wolke."},
		{name: "node1.node.dc1.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}},
		{name: "NODE1.Node.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}},
		{name: "node1.node.wolke.", qtype: dns.TypeAAAA, soa: true},
		{name: "node1.node.wolke.", qtype: dns.TypeSRV, soa: true},
		{name: "node1.node.wolke.", qtype: dns.TypeTXT, answer: []string{`TXT "rack=r1"`, `TXT "v=spf1"`}},
		{name: "node1.node.wolke.", qtype: dns.TypeANY, answer: []string{"A 10.0.0.1", `TXT "rack=r1"`, `TXT "v=spf1"`}},
		{name: "node2.node.wolke.", qtype: dns.TypeTXT, soa: true},
		{name: "node6.node.wolke.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::6"}},
		{name: "hostnode.node.wolke.", qtype: dns.TypeA, answer: []string{"CNAME db.example.org."}},
		{name: "nope.node.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "nope.node.wolke.", qtype: dns.TypeTXT, rcode: dns.RcodeNameError, soa: true},
		{name: "node1.node.dc2.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		// Zone apex: SOA and NS (the servers, from the "consul" service), nothing else.
		{name: "wolke.", qtype: dns.TypeNS, answer: []string{"NS server1.node.dc1.wolke."},
			extra: []string{"server1.node.dc1.wolke. A 10.0.0.100"}},
		{name: "wolke.", qtype: dns.TypeA, soa: true},
		// Not supported yet, other zones without recursors: REFUSED.
		{name: "web.query.wolke.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "web.connect.wolke.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "web.service.peer1.peer.wolke.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "wolke.example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "1.0.0.10.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeRefused},
	})
}

func TestSOA(t *testing.T) {
	s := startServer(t, fixtureCatalog(), nil)
	before := uint32(time.Now().Unix())
	r := query(t, "udp", s.Addr(), "web.service.wolke.", dns.TypeSOA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("SOA query: %v", r)
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok {
		t.Fatalf("answer %v is no SOA", r.Answer[0])
	}
	want := dns.SOA{Ns: "ns.wolke.", Mbox: "hostmaster.wolke.", Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0}
	if soa.Hdr.Name != "wolke." || soa.Ns != want.Ns || soa.Mbox != want.Mbox || soa.Refresh != want.Refresh ||
		soa.Retry != want.Retry || soa.Expire != want.Expire || soa.Minttl != want.Minttl || soa.Hdr.Ttl != 0 {
		t.Errorf("SOA %v, want Consul's defaults %v", soa, &want)
	}
	if soa.Serial < before || soa.Serial > uint32(time.Now().Unix()) {
		t.Errorf("serial %d is not the current time", soa.Serial)
	}
	if got := rrStrings(r.Ns); !slices.Equal(got, []string{"NS server1.node.dc1.wolke."}) {
		t.Errorf("authority %q, want the server's NS", got)
	}
}

func TestTTLs(t *testing.T) {
	s := startServer(t, fixtureCatalog(), func(c *Config) {
		c.NodeTTL = 10 * time.Second
		c.ServiceTTL = 20 * time.Second
		c.SOA.Minttl = 5
	})
	for _, tc := range []struct {
		name  string
		qtype uint16
		ttl   uint32
	}{
		{"web.service.wolke.", dns.TypeA, 20},
		{"web.service.wolke.", dns.TypeSRV, 20},
		{"node1.node.wolke.", dns.TypeA, 10},
		{"wolke.", dns.TypeNS, 10},
	} {
		r := query(t, "udp", s.Addr(), tc.name, tc.qtype, 0)
		if len(r.Answer) == 0 {
			t.Fatalf("%s: no answer", tc.name)
		}
		for _, rr := range append(r.Answer, r.Extra...) {
			if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != tc.ttl {
				t.Errorf("%s %s: %v has TTL %d, want %d", tc.name, dns.TypeToString[tc.qtype], rr, rr.Header().Ttl, tc.ttl)
			}
		}
	}
	r := query(t, "udp", s.Addr(), "nope.service.wolke.", dns.TypeA, 0)
	if len(r.Ns) != 1 || r.Ns[0].Header().Ttl != 5 || r.Ns[0].(*dns.SOA).Minttl != 5 {
		t.Errorf("NXDOMAIN authority %v: want the SOA with TTL and minimum 5", r.Ns)
	}
}

func TestOnlyPassing(t *testing.T) {
	for _, tc := range []struct {
		onlyPassing bool
		cases       []lookupCase
	}{
		{false, []lookupCase{
			{name: "web.service.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1", "A 10.0.0.2"}},
			{name: "warnonly.service.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.2"}},
			{name: "down.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		}},
		{true, []lookupCase{
			{name: "web.service.wolke.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}},
			{name: "web.service.wolke.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 8080 node1.node.dc1.wolke."}},
			{name: "warnonly.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
			{name: "down.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		}},
	} {
		t.Run("only-passing="+map[bool]string{false: "off", true: "on"}[tc.onlyPassing], func(t *testing.T) {
			s := startServer(t, fixtureCatalog(), func(c *Config) { c.OnlyPassing = tc.onlyPassing })
			runLookupCases(t, s, tc.cases)
		})
	}
}

func TestDomain(t *testing.T) {
	s := startServer(t, fixtureCatalog(), func(c *Config) { c.Domain = "Consul" })
	if s.Domain() != "consul." {
		t.Errorf("domain %q, want consul.", s.Domain())
	}
	runLookupCases(t, s, []lookupCase{
		{name: "web.service.consul.", qtype: dns.TypeSRV, answer: []string{"SRV 1 1 8080 node1.node.dc1.consul.", "SRV 1 1 8080 node2.node.dc1.consul."}},
		{name: "node1.node.dc1.CONSUL.", qtype: dns.TypeA, answer: []string{"A 10.0.0.1"}},
		{name: "web.service.wolke.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	})
	r := query(t, "udp", s.Addr(), "x.consul.", dns.TypeSOA, 0)
	if soa := r.Answer[0].(*dns.SOA); soa.Ns != "ns.consul." || soa.Mbox != "hostmaster.consul." {
		t.Errorf("SOA %v", soa)
	}
}

// TestShuffle checks that answers come in varying order: over 200 queries for a service
// with 10 instances, every instance is first at least once (a fixed or rarely changing
// order fails; a uniform shuffle misses one with probability about 10·0.9^200 ≈ 7e-9),
// and nearly every order is new (10! orders).
func TestShuffle(t *testing.T) {
	cat := newFakeCatalog()
	for i := range 10 {
		ip := "10.1.0." + string(rune('0'+i))
		cat.addService("many", Instance{Node: "n" + ip, NodeAddress: ip, Port: 80, Health: HealthPassing})
	}
	s := startServer(t, cat, nil)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	conn, err := c.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first := map[string]int{}
	orders := map[string]bool{}
	const n = 200
	for range n {
		m := new(dns.Msg)
		m.SetQuestion("many.service.wolke.", dns.TypeA)
		r, _, err := c.ExchangeWithConn(m, conn)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 10 {
			t.Fatalf("%d answers over TCP, want 10", len(r.Answer))
		}
		var order []string
		for _, rr := range r.Answer {
			order = append(order, rr.(*dns.A).A.String())
		}
		first[order[0]]++
		orders[strings.Join(order, ",")] = true
	}
	if len(first) != 10 {
		t.Errorf("only %d of 10 instances ever came first: %v", len(first), first)
	}
	if len(orders) < n-5 {
		t.Errorf("%d distinct orders in %d answers", len(orders), n)
	}
}

func TestCatalogErrors(t *testing.T) {
	cat := fixtureCatalog()
	s := startServer(t, cat, nil)
	cat.mu.Lock()
	cat.err = errors.New("store closed")
	cat.mu.Unlock()
	for _, name := range []string{"web.service.wolke.", "node1.node.wolke."} {
		r := query(t, "udp", s.Addr(), name, dns.TypeA, 0)
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s with a failing catalog: %s, want SERVFAIL", name, dns.RcodeToString[r.Rcode])
		}
	}
	cat.mu.Lock()
	cat.err, cat.panicMsg = nil, "boom"
	cat.mu.Unlock()
	r := query(t, "udp", s.Addr(), "web.service.wolke.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("panicking catalog: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	cat.mu.Lock()
	cat.panicMsg = ""
	cat.mu.Unlock()
	if r := query(t, "tcp", s.Addr(), "web.service.wolke.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after the panic: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestRequestChecks drives the handler directly with requests a DNS server must
// refuse politely.
func TestRequestChecks(t *testing.T) {
	s, err := New(DefaultConfig(), fixtureCatalog(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("web.service.wolke.", dns.TypeA)
		return m
	}
	for _, tc := range []struct {
		name  string
		req   func() *dns.Msg
		rcode int
	}{
		{"no question", func() *dns.Msg { m := base(); m.Question = nil; return m }, dns.RcodeFormatError},
		{"two questions", func() *dns.Msg {
			m := base()
			m.Question = append(m.Question, m.Question[0])
			return m
		}, dns.RcodeFormatError},
		{"notify", func() *dns.Msg { m := base(); m.Opcode = dns.OpcodeNotify; return m }, dns.RcodeNotImplemented},
		{"update", func() *dns.Msg { m := base(); m.Opcode = dns.OpcodeUpdate; return m }, dns.RcodeNotImplemented},
		{"EDNS version 1", func() *dns.Msg {
			m := base()
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, dns.RcodeBadVers},
		{"AXFR", func() *dns.Msg { m := base(); m.Question[0].Qtype = dns.TypeAXFR; return m }, dns.RcodeNotImplemented},
		{"valid", base, dns.RcodeSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &recorder{}
			s.ServeDNS(w, tc.req())
			if w.msg == nil {
				t.Fatal("no response")
			}
			if w.msg.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[w.msg.Rcode], dns.RcodeToString[tc.rcode])
			}
			if w.packed == nil {
				t.Errorf("response does not pack: %v", w.msg)
			}
		})
	}
}

func TestRcodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, dns.RcodeSuccess},
		{errNoData, dns.RcodeSuccess},
		{errNameNotFound, dns.RcodeNameError},
		{errNotSupported, dns.RcodeRefused},
		{errNotInZone, dns.RcodeRefused},
		{errNotImplemented, dns.RcodeNotImplemented},
		{errFormat, dns.RcodeFormatError},
		{errCatalog, dns.RcodeServerFailure},
		{errors.Join(errors.New("x"), errNameNotFound), dns.RcodeNameError},
		{errors.New("other"), dns.RcodeServerFailure},
	} {
		if got := rcodeOf(tc.err); got != tc.want {
			t.Errorf("rcodeOf(%v) = %s, want %s", tc.err, dns.RcodeToString[got], dns.RcodeToString[tc.want])
		}
	}
}

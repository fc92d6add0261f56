package dns

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// garbage are packets a server must survive: truncated headers, lying counts, label
// pointers that loop, a response, an update, random bytes.
func garbage() [][]byte {
	valid := func() []byte {
		m := new(dns.Msg)
		m.SetQuestion("web.service.wolke.", dns.TypeSRV)
		b, _ := m.Pack()
		return b
	}
	var out [][]byte
	out = append(out, nil, []byte{0}, []byte{0, 1, 2}, make([]byte, 12))
	b := valid()
	out = append(out, b[:len(b)-3]) // cut inside the question
	lying := valid()
	binary.BigEndian.PutUint16(lying[4:], 40) // qdcount 40
	out = append(out, lying)
	answers := valid()
	binary.BigEndian.PutUint16(answers[6:], 0xFFFF) // ancount
	out = append(out, answers)
	loop := valid()[:12]
	loop = append(loop, 0xC0, 12, 0, 1, 0, 1) // name pointing at itself
	out = append(out, loop)
	resp := valid()
	resp[2] |= 0x80 // QR: a response
	out = append(out, resp)
	upd := valid()
	upd[2] = upd[2]&^0x78 | dns.OpcodeUpdate<<3
	out = append(out, upd)
	long := valid()[:12]
	for range 200 {
		long = append(long, 63)
		long = append(long, make([]byte, 63)...)
	}
	out = append(out, long)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		p := make([]byte, rng.IntN(600))
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		out = append(out, p)
	}
	return out
}

func TestMalformedPackets(t *testing.T) {
	s := startServer(t, fixtureCatalog(), nil)
	udp, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, p := range garbage() {
		if _, err := udp.Write(p); err != nil {
			t.Fatal(err)
		}
		// TCP: a length prefix, then the packet; a lying length too.
		tcp, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		tcp.SetDeadline(time.Now().Add(time.Second))
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(p)+7))
		tcp.Write(append(frame, p...))
		tcp.Close()
	}
	// Still serving, both ways.
	for _, network := range []string{"udp", "tcp"} {
		if r := query(t, network, s.Addr(), "web.service.wolke.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Errorf("%s after garbage: %v", network, r)
		}
	}
}

// FuzzServeDNS feeds the query handler any message that parses: it must answer with a
// message that packs, within the UDP size limit, and never panic.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.service.wolke.", dns.TypeA}, {"_web._tcp.service.wolke.", dns.TypeSRV},
		{"v1.web.service.dc1.wolke.", dns.TypeSRV}, {"node1.node.wolke.", dns.TypeANY},
		{"c0a8010a.addr.wolke.", dns.TypeA}, {"wolke.", dns.TypeSOA}, {"wolke.", dns.TypeNS},
		{"big.service.wolke.", dns.TypeSRV}, {"example.com.", dns.TypeA}, {"x.query.wolke.", dns.TypeTXT},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
		m.SetEdns0(1232, true)
		b, _ = m.Pack()
		f.Add(b)
	}
	for _, g := range garbage()[:12] {
		f.Add(g)
	}
	cat := fixtureCatalog()
	for _, in := range bigCatalog(40).services["big"] {
		cat.addService("big", in)
	}
	s, err := New(DefaultConfig(), cat, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		for _, remote := range []net.Addr{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}} {
			w := &recorder{remote: remote}
			s.ServeDNS(w, req)
			if w.msg == nil {
				t.Fatal("no response")
			}
			if w.packed == nil {
				t.Fatalf("response does not pack: %v", w.msg)
			}
			if _, udp := remote.(*net.UDPAddr); udp && len(req.Question) == 1 && w.msg.Rcode != dns.RcodeRefused {
				limit := dns.MinMsgSize
				if opt := req.IsEdns0(); opt != nil {
					limit = max(limit, int(opt.UDPSize()))
				}
				if len(w.packed) > limit && len(w.msg.Answer) > 1 {
					t.Fatalf("%d-byte UDP response with %d answers, limit %d", len(w.packed), len(w.msg.Answer), limit)
				}
			}
		}
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	s, err := New(cfg, fixtureCatalog(), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{}
	ask := func(name string, qtype uint16) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		s.ServeDNS(w, m)
	}
	ask("web.service.wolke.", dns.TypeA)
	ask("web.service.wolke.", dns.TypeA)
	ask("nope.service.wolke.", dns.TypeSRV)
	ask("example.com.", 65000) // an unusual type counts as "other"
	for _, tc := range []struct {
		typ, rcode string
		want       float64
	}{
		{"A", "NOERROR", 2}, {"SRV", "NXDOMAIN", 1}, {"other", "REFUSED", 1},
	} {
		if got := testutil.ToFloat64(s.metrics.queries.WithLabelValues(tc.typ, tc.rcode)); got != tc.want {
			t.Errorf("queries{type=%s,rcode=%s} = %v, want %v", tc.typ, tc.rcode, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "wolke_dns_query_duration_seconds"); n != 1 {
		t.Errorf("%d duration histograms", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
	// A second server on the same registry is an error, not a panic.
	if _, err := New(cfg, fixtureCatalog(), nil, reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

package agent

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"
)

func TestDNSAnswersFromTheCatalog(t *testing.T) {
	a := startDev(t, func(c *Config) { c.NodeName = "n1" })
	c := clientFor(t, a)
	for i, port := range []int{8080, 8081} {
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-" + string(rune('1'+i)), Name: "web",
			Port: port, Address: "127.0.0." + string(rune('5'+i)), Tags: []string{"v1"}, Check: &api.AgentServiceCheck{TTL: "1m", Status: "passing"}}); err != nil {
			t.Fatal(err)
		}
	}
	addr := a.dnsServer.Addr()
	ask := func(name string, qtype uint16, tcp bool) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		cl := &mdns.Client{Timeout: 2 * time.Second}
		if tcp {
			cl.Net = "tcp"
		}
		r, _, err := cl.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	waitFor(t, 5*time.Second, "two SRV answers", func() bool {
		r := ask("_web._tcp.service.wolke.", mdns.TypeSRV, false)
		return r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 2
	})
	r := ask("v1.web.service.wolke.", mdns.TypeA, true)
	if len(r.Answer) != 2 {
		t.Fatalf("tagged A: %v", r)
	}
	if r := ask("nope.service.wolke.", mdns.TypeA, false); r.Rcode != mdns.RcodeNameError || len(r.Ns) == 0 {
		t.Fatalf("unknown service: rcode %d, authority %v", r.Rcode, r.Ns)
	}
	if r := ask("n1.node.wolke.", mdns.TypeA, false); len(r.Answer) != 1 {
		t.Fatalf("node lookup: %v", r)
	}
	// A failing instance leaves the answers.
	if err := c.Agent().FailTTL("service:web-1", "down"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the critical instance out of DNS", func() bool {
		r := ask("web.service.wolke.", mdns.TypeSRV, false)
		return len(r.Answer) == 1
	})
	if r := ask("example.com.", mdns.TypeA, false); r.Rcode != mdns.RcodeRefused {
		t.Fatalf("another zone without recursors: rcode %d", r.Rcode)
	}
}

package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// dig runs dig against an agent's DNS interface and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// answers counts the records of a type in dig's ANSWER section.
func answers(out, rtype string) int {
	n := 0
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			in = true
		case strings.HasPrefix(line, ";;") || line == "":
			in = false
		case in && strings.Contains(line, "\tIN\t"+rtype+"\t"):
			n++
		}
	}
	return n
}

// TestDiscoveryAcrossAgentsWithDig: 3 servers and 2 client agents; services registered on
// the clients are found through every agent's DNS interface (UDP and TCP, A, SRV, tags,
// NXDOMAIN, truncation of a 100-instance answer), and the services of a SIGKILLed client
// leave ?passing results and DNS within the gossip failure-detection time.
func TestDiscoveryAcrossAgentsWithDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils; .ci/run does)")
	}
	c := startCluster(t, clusterOpts{clients: 2, dns: true})
	for i, cl := range c.clients {
		reg := &api.AgentServiceRegistration{ID: "web-" + cl.name, Name: "web", Port: 8080 + i,
			Address: fmt.Sprintf("127.0.1.%d", i+1), Tags: []string{"v" + fmt.Sprint(i+1)},
			Check: &api.AgentServiceCheck{TTL: "10m", Status: "passing"}}
		if err := c.api(cl).Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	// 100 instances of one service, registered through the catalog.
	for i := 0; i < 100; i++ {
		reg := &api.CatalogRegistration{Node: fmt.Sprintf("ext-%d", i), Address: fmt.Sprintf("10.9.%d.%d", i/250, i%250+1),
			Service: &api.AgentService{ID: "big", Service: "big", Port: 9000}}
		if _, err := c.api(c.servers[0]).Catalog().Register(reg, nil); err != nil {
			t.Fatal(err)
		}
	}
	via := c.clients[1]
	deadline := time.Now().Add(20 * time.Second)
	for answers(dig(t, via.dnsAddr, "_web._tcp.service.wolke.", "SRV"), "SRV") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("two SRV answers never appeared: %s", dig(t, via.dnsAddr, "_web._tcp.service.wolke.", "SRV"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.all() {
		for _, proto := range []string{"+notcp", "+tcp"} {
			if got := answers(dig(t, n.dnsAddr, proto, "web.service.wolke.", "A"), "A"); got != 2 {
				t.Fatalf("%s %s: %d A answers, want 2", n.name, proto, got)
			}
		}
		srv := dig(t, n.dnsAddr, "_web._v1.service.wolke.", "SRV")
		if answers(srv, "SRV") != 1 || !strings.Contains(srv, "ADDITIONAL SECTION") {
			t.Fatalf("%s: tagged SRV:\n%s", n.name, srv)
		}
	}
	if out := dig(t, via.dnsAddr, "v2.web.service.wolke.", "A"); answers(out, "A") != 1 || !strings.Contains(out, "127.0.1.2") {
		t.Fatalf("tag lookup:\n%s", out)
	}
	if out := dig(t, via.dnsAddr, "nope.service.wolke.", "A"); !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA") {
		t.Fatalf("unknown service:\n%s", out)
	}
	udp := dig(t, via.dnsAddr, "+notcp", "+ignore", "+noedns", "big.service.wolke.", "A")
	if !strings.Contains(udp, " tc") || answers(udp, "A") >= 100 {
		t.Fatalf("100 instances over UDP: want a truncated answer:\n%s", udp)
	}
	if got := answers(dig(t, via.dnsAddr, "+tcp", "big.service.wolke.", "A"), "A"); got != 100 {
		t.Fatalf("100 instances over TCP: %d answers", got)
	}

	// SIGKILL the first client: its instance leaves ?passing and DNS.
	victim := c.clients[0]
	victim.kill()
	killed := time.Now()
	health := c.api(c.servers[0]).Health()
	var gonePassing, goneDNS time.Duration
	for gonePassing == 0 || goneDNS == 0 {
		if time.Since(killed) > 40*time.Second {
			t.Fatalf("the killed agent's service is still there after 40 s (passing gone after %v, DNS after %v)", gonePassing, goneDNS)
		}
		if gonePassing == 0 {
			if e, _, err := health.Service("web", "", true, nil); err == nil && len(e) == 1 {
				gonePassing = time.Since(killed)
			}
		}
		if goneDNS == 0 && answers(dig(t, via.dnsAddr, "web.service.wolke.", "A"), "A") == 1 {
			goneDNS = time.Since(killed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after SIGKILL of %s: gone from ?passing in %v, from DNS in %v (LAN gossip timing)",
		victim.name, gonePassing.Round(10*time.Millisecond), goneDNS.Round(10*time.Millisecond))
}

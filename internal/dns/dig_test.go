package dns

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDig queries the server with ISC dig, the tool operators use, when it is
// installed (Debian: apt-get install dnsutils); otherwise the test is skipped.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
	s := startServer(t, fixtureCatalog(), nil)
	host, port, _ := net.SplitHostPort(s.Addr())
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		args = append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	lines := func(s string) []string {
		l := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(l)
		return l
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"web.service.wolke.", "SRV", "+tcp", "+short"},
			[]string{"1 1 8080 node1.node.dc1.wolke.", "1 1 8080 node2.node.dc1.wolke."}},
		{[]string{"web.service.wolke.", "SRV", "+short"},
			[]string{"1 1 8080 node1.node.dc1.wolke.", "1 1 8080 node2.node.dc1.wolke."}},
		{[]string{"_web._tcp.service.dc1.wolke.", "SRV", "+short"},
			[]string{"1 1 8080 node1.node.dc1.wolke.", "1 1 8080 node2.node.dc1.wolke."}},
		{[]string{"web.service.wolke.", "A", "+short"}, []string{"10.0.0.1", "10.0.0.2"}},
		{[]string{"node1.node.wolke.", "A", "+short", "+notcp"}, []string{"10.0.0.1"}},
	} {
		if got := lines(run(tc.args...)); !slices.Equal(got, tc.want) {
			t.Errorf("dig %s: %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	// Full output: status, flags and sections.
	out := run("nope.service.wolke.", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "hostmaster.wolke.") {
		t.Errorf("NXDOMAIN with SOA expected:\n%s", out)
	}
	out = run("web.service.wolke.", "SRV")
	if !strings.Contains(out, "flags: qr aa rd;") || !strings.Contains(out, "ADDITIONAL SECTION") ||
		!strings.Contains(out, "node1.node.dc1.wolke.\t0\tIN\tA\t10.0.0.1") {
		t.Errorf("authoritative SRV answer with additional A records expected:\n%s", out)
	}
}

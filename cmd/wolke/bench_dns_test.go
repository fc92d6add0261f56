package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	wdns "github.com/wolke-platform/wolke/internal/dns"
	"github.com/wolke-platform/wolke/internal/dns/dnsbench"
)

// benchDNSCatalog serves the service "web" with n passing instances.
type benchDNSCatalog struct{ n int }

func (c benchDNSCatalog) ServiceInstances(_ context.Context, service, _ string) ([]wdns.Instance, error) {
	if service != "web" {
		return nil, nil
	}
	out := make([]wdns.Instance, c.n)
	for i := range out {
		out[i] = wdns.Instance{Node: fmt.Sprintf("node%d", i), NodeAddress: fmt.Sprintf("10.0.0.%d", i+1), Port: 8080, Health: wdns.HealthPassing}
	}
	return out, nil
}
func (benchDNSCatalog) Node(context.Context, string) (wdns.NodeInfo, bool, error) {
	return wdns.NodeInfo{}, false, nil
}
func (benchDNSCatalog) Datacenter() string { return "dc1" }

func startBenchDNSServer(t *testing.T) string {
	t.Helper()
	cfg := wdns.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	s, err := wdns.New(cfg, benchDNSCatalog{n: 20}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s.Addr()
}

func TestBenchDNS(t *testing.T) {
	addr := startBenchDNSServer(t)
	out := mustCLI(t, "", "bench", "dns", "-server", addr, "-c", "2", "-d", "100ms", "-warmup", "10ms", "-type", "srv")
	for _, want := range []string{"dns SRV web.service.wolke. @" + addr + " over udp, 2 workers", "NOERROR", "p99.9", "3.0 answers per response"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, "", "bench", "dns", "-server", addr, "-c", "2", "-d", "100ms", "-warmup", "0s",
		"-type", "A", "-tcp", "-name", "web.service.wolke", "-format", "json")
	var r dnsbench.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if r.Net != "tcp" || r.Type != "A" || r.Queries == 0 || r.AnswersPerResponse != 20 || r.Errors != 0 {
		t.Errorf("result %+v", r)
	}
}

func TestBenchDNSUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-type", "BOGUS"},
		{"-c", "0"},
		{"-edns", "70000"},
		{"-format", "xml"},
		{"-server", "nohostport"},
	} {
		r := runCLI(t, "", append([]string{"bench", "dns"}, args...)...)
		if r.code != 2 {
			t.Errorf("bench dns %v: exit %d (stderr %q), want 2", args, r.code, r.stderr)
		}
	}
}

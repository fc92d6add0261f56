package dnsbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	wdns "github.com/wolke-platform/wolke/internal/dns"
)

// staticCatalog serves one service of n passing instances.
type staticCatalog struct{ insts []wdns.Instance }

func (c staticCatalog) ServiceInstances(_ context.Context, service, _ string) ([]wdns.Instance, error) {
	if service != "web" {
		return nil, nil
	}
	return append([]wdns.Instance(nil), c.insts...), nil
}
func (staticCatalog) Node(context.Context, string) (wdns.NodeInfo, bool, error) {
	return wdns.NodeInfo{}, false, nil
}
func (staticCatalog) Datacenter() string { return "dc1" }

func startServer(t *testing.T, n int) string {
	t.Helper()
	var c staticCatalog
	for i := range n {
		c.insts = append(c.insts, wdns.Instance{Node: fmt.Sprintf("n%d", i), NodeAddress: fmt.Sprintf("10.0.0.%d", i+1), Port: 80, Health: wdns.HealthPassing})
	}
	cfg := wdns.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	s, err := wdns.New(cfg, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s.Addr()
}

func TestRun(t *testing.T) {
	addr := startServer(t, 20)
	for _, tc := range []struct {
		name       string
		qname      string
		qtype      uint16
		net        string
		edns       uint16
		rcode      string
		answers    float64
		truncation bool
	}{
		{"SRV over UDP: 3 answers and TC", "web.service.wolke.", dns.TypeSRV, "udp", 0, "NOERROR", 3, true},
		{"A over TCP: all", "web.service.wolke.", dns.TypeA, "tcp", 0, "NOERROR", 20, false},
		{"A over UDP with EDNS: all", "web.service.wolke.", dns.TypeA, "udp", 1232, "NOERROR", 20, false},
		{"unknown", "nope.service.wolke.", dns.TypeA, "udp", 0, "NXDOMAIN", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Server, cfg.Name, cfg.Type, cfg.Net, cfg.EDNS = addr, tc.qname, tc.qtype, tc.net, tc.edns
			cfg.Concurrency, cfg.Duration, cfg.Warmup = 2, 100*time.Millisecond, 20*time.Millisecond
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Queries == 0 || r.Errors != 0 || r.Rcodes[tc.rcode] != r.Queries {
				t.Fatalf("queries %d, errors %d %v, rcodes %v", r.Queries, r.Errors, r.ErrorSamples, r.Rcodes)
			}
			if r.AnswersPerResponse != tc.answers {
				t.Errorf("%.1f answers per response, want %.0f", r.AnswersPerResponse, tc.answers)
			}
			if (r.Truncated == r.Queries) != tc.truncation || (r.Truncated != 0 && r.Truncated != r.Queries) {
				t.Errorf("%d of %d truncated", r.Truncated, r.Queries)
			}
			if r.QPS <= 0 || r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.Latency.P999 < r.Latency.P99 {
				t.Errorf("figures: %+v", r)
			}
			if r.Duration < cfg.Duration {
				t.Errorf("measured %v, want at least %v", r.Duration, cfg.Duration)
			}
			var text, js bytes.Buffer
			r.Write(&text, "text")
			if !strings.Contains(text.String(), "p99.9") {
				t.Errorf("text output: %s", text.String())
			}
			r.Write(&js, "json")
			var back Result
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Queries != r.Queries {
				t.Errorf("json output %s: %v", js.String(), err)
			}
		})
	}
}

func TestRunNoServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := DefaultConfig()
	cfg.Server, cfg.Concurrency, cfg.Duration, cfg.Warmup, cfg.Timeout = pc.LocalAddr().String(), 1, 150*time.Millisecond, 0, 50*time.Millisecond
	r, err := Run(context.Background(), cfg)
	if err == nil || r.Errors == 0 || r.Queries != 0 {
		t.Errorf("against a silent server: %v, %+v", err, r)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Server, c.Name, c.Net, c.Concurrency, c.Duration = "x", "a..b", "sctp", 0, 0
	err := c.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 4 {
		t.Errorf("five problems, error %v", err)
	}
}

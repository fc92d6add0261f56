package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

func TestBenchCatalog(t *testing.T) {
	a := agenttest.StartDev(t)
	out := mustCLI(t, "", "bench", "catalog", "-http-addr", a.HTTPAddr(), "-instances", "60", "-nodes", "7",
		"-per-service", "20", "-c", "2", "-d", "200ms", "-warmup", "10ms", "-format", "json")
	var r catalogResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if r.Services != 3 || r.Requests == 0 || r.Errors != 0 || r.Latency.P99 <= 0 || !strings.HasPrefix(r.Path, "/v1/health/service/bench-0") {
		t.Fatalf("result %+v", r)
	}
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, err := client.Catalog().Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := client.Health().Service("bench-2", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 7 nodes plus the dev agent's own.
	if len(nodes) != 8 || len(entries) != 20 {
		t.Fatalf("catalog holds %d nodes and %d passing bench-2 instances, want 8 and 20", len(nodes), len(entries))
	}
	// Without -register it only measures.
	out = mustCLI(t, "", "bench", "catalog", "-http-addr", a.HTTPAddr(), "-register=false", "-service", "bench-1",
		"-c", "1", "-d", "100ms", "-warmup", "0s")
	if !strings.Contains(out, "GET /v1/health/service/bench-1?passing  c=1") || !strings.Contains(out, "0 errors") {
		t.Fatalf("text output:\n%s", out)
	}
	// With -rate the load keeps its schedule: 400 requests/s for 500 ms is 200
	// requests, never more (a closed loop does tens of thousands).
	out = mustCLI(t, "", "bench", "catalog", "-http-addr", a.HTTPAddr(), "-register=false", "-c", "4",
		"-rate", "400", "-d", "500ms", "-warmup", "0s", "-format", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if r.Rate != 400 || r.Requests < 150 || r.Requests > 200 || r.Errors != 0 {
		t.Fatalf("-rate 400 for 500ms: %+v", r)
	}
}

func TestBenchCatalogUsage(t *testing.T) {
	for _, args := range [][]string{{"-c", "0"}, {"-instances", "0"}, {"-format", "xml"}, {"-http-addr", "https://127.0.0.1:1"}, {"-rate", "-5"}} {
		if r := runCLI(t, "", append([]string{"bench", "catalog"}, args...)...); r.code != 2 {
			t.Errorf("bench catalog %v: exit %d (stderr %q), want 2", args, r.code, r.stderr)
		}
	}
}

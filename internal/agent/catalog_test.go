package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestCatalogAndHealthWithConsulClient(t *testing.T) {
	a := startDev(t, func(c *Config) { c.NodeName = "n1" })
	c := clientFor(t, a)
	// The leader registers its own node with a passing serfHealth.
	waitFor(t, 10*time.Second, "the agent's own node in the catalog", func() bool {
		checks, _, err := c.Health().Node("n1", nil)
		return err == nil && len(checks) == 1 && checks[0].CheckID == "serfHealth" && checks[0].Status == "passing"
	})
	_, meta, err := c.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan map[string][]string, 1)
	go func() {
		s, _, _ := c.Catalog().Services(&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		woke <- s
	}()
	reg := &api.CatalogRegistration{Node: "ext1", Address: "10.1.1.1",
		Service: &api.AgentService{ID: "web-1", Service: "web", Tags: []string{"v1"}, Port: 8080, Meta: map[string]string{"k": "v"}},
		Checks:  api.HealthChecks{{CheckID: "web-check", Name: "web up", ServiceID: "web-1", Status: "passing"}}}
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-woke:
		if len(s["web"]) != 1 || s["web"][0] != "v1" {
			t.Fatalf("services after registration: %v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocking Catalog().Services did not wake on a registration")
	}
	entries, _, err := c.Health().Service("web", "v1", true, nil)
	if err != nil || len(entries) != 1 || entries[0].Service.Port != 8080 || entries[0].Node.Address != "10.1.1.1" ||
		entries[0].Checks.AggregatedStatus() != "passing" {
		t.Fatalf("healthy web: %+v %v", entries, err)
	}
	cs, _, err := c.Catalog().Service("web", "", nil)
	if err != nil || len(cs) != 1 || cs[0].ServiceID != "web-1" || cs[0].ServiceMeta["k"] != "v" {
		t.Fatalf("catalog service: %+v %v", cs, err)
	}
	// The check turns critical: gone from ?passing, still in the unfiltered list.
	reg.Checks[0].Status = "critical"
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	if healthy, _, _ := c.Health().Service("web", "", true, nil); len(healthy) != 0 {
		t.Fatalf("a critical instance is still passing: %+v", healthy)
	}
	if all, _, _ := c.Health().Service("web", "", false, nil); len(all) != 1 {
		t.Fatalf("unfiltered: %d", len(all))
	}
	if crit, _, _ := c.Health().State("critical", nil); len(crit) != 1 || crit[0].CheckID != "web-check" {
		t.Fatalf("critical checks: %+v", crit)
	}
	if _, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "ext1"}, nil); err != nil {
		t.Fatal(err)
	}
	if nodes, _, _ := c.Catalog().Nodes(nil); len(nodes) != 1 || nodes[0].Node != "n1" {
		t.Fatalf("nodes after deregistration: %+v", nodes)
	}
	dcs, err := c.Catalog().Datacenters()
	if err != nil || len(dcs) != 1 || dcs[0] != "dc1" {
		t.Fatalf("datacenters %v %v", dcs, err)
	}
}

func TestFailedNodeTurnsCriticalInCatalog(t *testing.T) {
	s1 := startClusterAgent(t, "s1", 3, "")
	s2 := startClusterAgent(t, "s2", 3, s1.SerfAddr())
	s3 := startClusterAgent(t, "s3", 3, s1.SerfAddr())
	c1 := startClusterAgent(t, "c1", 0, s1.SerfAddr())
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf([]*Agent{s1, s2, s3}) != nil })
	h := clientFor(t, s2).Health()
	waitFor(t, 10*time.Second, "c1 passing in the catalog", func() bool {
		checks, _, err := h.Node("c1", nil)
		return err == nil && len(checks) == 1 && checks[0].Status == "passing"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c1.Shutdown(ctx)
	cancel()
	waitFor(t, 20*time.Second, "c1's serfHealth critical", func() bool {
		checks, _, err := h.Node("c1", nil)
		return err == nil && len(checks) == 1 && checks[0].Status == "critical"
	})
}

func TestHealthServiceFilter(t *testing.T) {
	c := clientFor(t, startDev(t))
	for i, env := range []string{"prod", "dev", "prod"} {
		reg := &api.CatalogRegistration{Node: "ext", Address: "10.0.0.9",
			Service: &api.AgentService{ID: "api-" + string(rune('a'+i)), Service: "api", Port: 9000 + i,
				Tags: []string{env}, Meta: map[string]string{"env": env}}}
		if _, err := c.Catalog().Register(reg, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := c.Health().Service("api", "", false, &api.QueryOptions{Filter: `Service.Meta.env == prod and "prod" in Service.Tags`})
	if err != nil || len(got) != 2 {
		t.Fatalf("filtered: %d %v", len(got), err)
	}
	if _, _, err := c.Health().Service("api", "", false, &api.QueryOptions{Filter: `Service.Meta.env ==`}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a bad filter: %v", err)
	}
	nodes, _, err := c.Catalog().Nodes(&api.QueryOptions{Filter: `Node == ext`})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("node filter: %+v %v", nodes, err)
	}
}

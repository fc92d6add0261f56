package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestAgentServiceWithHTTPCheckReachesHealthAPI(t *testing.T) {
	a := startDev(t, func(c *Config) { c.NodeName = "n1" })
	c := clientFor(t, a)
	var healthy atomic.Bool
	healthy.Store(true)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer backend.Close()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8080, Tags: []string{"v1"},
		Check: &api.AgentServiceCheck{HTTP: backend.URL, Interval: "1s", Timeout: "1s"}})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := c.Agent().Services()
	if err != nil || svcs["web-1"] == nil || svcs["web-1"].Port != 8080 {
		t.Fatalf("agent services: %+v %v", svcs, err)
	}
	checks, _ := c.Agent().Checks()
	if checks["service:web-1"] == nil || checks["service:web-1"].Name != "Service 'web' check" {
		t.Fatalf("default check ID and name: %+v", checks)
	}
	waitFor(t, 10*time.Second, "web-1 passing in the health API", func() bool {
		e, _, err := c.Health().Service("web", "", true, nil)
		return err == nil && len(e) == 1 && e[0].Service.ID == "web-1" && strings.Contains(e[0].Checks[1].Output, "200")
	})
	// Maintenance takes a service out even when its checks pass.
	if err := c.Agent().EnableServiceMaintenance("web-1", "deploy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "maintenance visible", func() bool {
		e, _, _ := c.Health().Service("web", "", false, nil)
		return len(e) == 1 && e[0].Checks.AggregatedStatus() == "maintenance"
	})
	c.Agent().DisableServiceMaintenance("web-1")
	waitFor(t, 5*time.Second, "web-1 passing after maintenance", func() bool {
		e, _, _ := c.Health().Service("web", "", true, nil)
		return len(e) == 1
	})
	// A 500 makes the check critical; so does a server that stops answering.
	healthy.Store(false)
	waitFor(t, 10*time.Second, "web-1 dropped from passing on 500", func() bool {
		e, _, err := c.Health().Service("web", "", true, nil)
		return err == nil && len(e) == 0
	})
	healthy.Store(true)
	waitFor(t, 10*time.Second, "web-1 passing again", func() bool {
		e, _, _ := c.Health().Service("web", "", true, nil)
		return len(e) == 1
	})
	backend.Close()
	waitFor(t, 10*time.Second, "web-1 dropped from passing when its server stopped", func() bool {
		e, _, err := c.Health().Service("web", "", true, nil)
		return err == nil && len(e) == 0
	})
	if err := c.Agent().ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "web-1 gone from the catalog", func() bool {
		cs, _, _ := c.Catalog().Service("web", "", nil)
		return len(cs) == 0
	})
}

func TestTTLCheckPropagatesFast(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "worker",
		Check: &api.AgentServiceCheck{TTL: "30s"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "critical at first (Consul's default)", func() bool {
		cs, _, _ := c.Health().Checks("worker", nil)
		return len(cs) == 1 && cs[0].Status == "critical"
	})
	start := time.Now()
	if err := c.Agent().PassTTL("service:worker", "fine"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "passing in the catalog", func() bool {
		cs, _, _ := c.Health().Checks("worker", nil)
		return len(cs) == 1 && cs[0].Status == "passing" && cs[0].Output == "fine"
	})
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a TTL pass took %v to reach the catalog", took)
	}
	if err := c.Agent().UpdateTTL("service:worker", "slow", api.HealthWarning); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "warning", func() bool {
		cs, _, _ := c.Health().Checks("worker", nil)
		return len(cs) == 1 && cs[0].Status == "warning"
	})
}

func TestAgentServiceBadInput(t *testing.T) {
	a := startDev(t)
	cases := []struct {
		path, body string
		code       int
		reason     string
	}{
		{"/v1/agent/service/register", `{"Port":80}`, 400, "Missing service name"},
		{"/v1/agent/service/register", `{"Name":"x","Port":70000}`, 400, "port"},
		{"/v1/agent/service/register", `{"Name":"x","Check":{"HTTP":"http://127.0.0.1:1","Interval":"bogus"}}`, 400, ""},
		{"/v1/agent/service/register", `{"Name":"x","Check":{"Interval":"10s"}}`, 400, ""},
		{"/v1/agent/service/register", `{"Name":"x","Check":{"Args":["/bin/true"],"Interval":"10s"}}`, 400, "script"},
		{"/v1/agent/service/register", `{"Name":`, 400, "decode"},
		{"/v1/agent/service/deregister/nope", ``, 404, "Unknown service"},
		{"/v1/agent/check/pass/nope", ``, 404, ""},
		{"/v1/agent/check/update/x", `{"Status":"great"}`, 400, "Invalid check status"},
		{"/v1/agent/service/maintenance/x?enable=maybe", ``, 400, "enable"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("PUT", "http://"+a.HTTPAddr()+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 300)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(strings.ToLower(string(b[:n])), strings.ToLower(tc.reason)) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.path, tc.body, resp.StatusCode, b[:n], tc.code, tc.reason)
		}
	}
	if svcs, _ := clientFor(t, a).Agent().Services(); len(svcs) != 0 {
		t.Fatalf("rejected registrations left %d services", len(svcs))
	}
}

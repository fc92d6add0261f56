package chassis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func consulClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // before the agent's shutdown, which waits for them
	c, err := api.NewClient(&api.Config{Address: addr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listed reports whether the catalog lists instance id of service, and its check status.
func listed(t testing.TB, c *api.Client, service, id string) (bool, string) {
	t.Helper()
	entries, _, err := c.Health().Service(service, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Service.ID == id {
			return true, e.Checks.AggregatedStatus()
		}
	}
	return false, ""
}

func TestRunRegistersServesAndDeregistersBeforeClosing(t *testing.T) {
	agent := startAgent(t)
	c := consulClient(t, agent)
	r := startInstance(t, agent, Service{
		Name: "alpha", Version: "1.2.3", Tags: []string{"blue"}, Meta: map[string]string{"team": "shop"},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "alpha") }),
	}, "DEREGISTER_WAIT", "300ms", "SERVICE_TAGS", "canary")

	// Registered, passing at once, with its meta and an HTTP check on /health/ready.
	svc, _, err := c.Agent().Service(r.ID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, adminPort, _ := net.SplitHostPort(r.AdminAddr())
	if svc.Service != "alpha" || svc.Meta["version"] != "1.2.3" || svc.Meta["admin_port"] != adminPort ||
		svc.Meta["team"] != "shop" || strings.Join(svc.Tags, ",") != "blue,canary" || svc.Address != "127.0.0.1" ||
		fmt.Sprint(svc.Port) != strings.Split(r.Addr(), ":")[1] {
		t.Fatalf("registration: %+v", svc)
	}
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	chk := checks["service:"+r.ID()]
	if chk == nil || chk.Status != api.HealthPassing || chk.Type != "http" {
		t.Fatalf("check: %+v", chk)
	}
	if ok, status := listed(t, c, "alpha", r.ID()); !ok || status != api.HealthPassing {
		t.Fatalf("catalog: listed %v, status %q", ok, status)
	}
	if ready := r.logs.find(t, "ready"); ready == nil || ready["startup_ms"].(float64) >= 1000 {
		t.Fatalf("ready log line: %v", ready)
	}

	// The API and the admin port answer.
	hc := &http.Client{Timeout: 2 * time.Second}
	if code, body := get(t, hc, "http://"+r.Addr()+"/"); code != 200 || body != "alpha" {
		t.Fatalf("API: %d %q", code, body)
	}
	admin := "http://" + r.AdminAddr()
	for path, want := range map[string]string{
		"/health/live": `"live"`, "/health/ready": `"ready"`, "/metrics": `chassis_build_info{service="alpha",version="1.2.3"} 1`,
		"/debug/pprof/": "goroutine", "/info": `"state":"ready"`,
	} {
		if code, body := get(t, hc, admin+path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body lacks %q:\n%.300s", path, code, want, body)
		}
	}

	// Shutdown: watch the catalog; when the instance is gone from it, the instance
	// must still accept requests (and report draining).
	_, meta, err := c.Health().Service("alpha", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan error, 1)
	go func() {
		idx := meta.LastIndex
		for {
			entries, m, err := c.Health().Service("alpha", "", false, &api.QueryOptions{WaitIndex: idx})
			if err != nil {
				gone <- err
				return
			}
			if len(entries) == 0 {
				gone <- nil
				return
			}
			idx = m.LastIndex
		}
	}()
	r.cancel()
	select {
	case err := <-gone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not deregistered within 5s")
	}
	if code, body := get(t, hc, "http://"+r.Addr()+"/"); code != 200 || body != "alpha" {
		t.Fatalf("after deregistration, before the wait ended: %d %q", code, body)
	}
	if code, body := get(t, hc, admin+"/health/ready"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("ready while draining: %d %s", code, body)
	}
	if err := r.wait(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Fatal("still accepting after Run returned")
	}
	for _, msg := range []string{"shutting down", "deregistered", "drained", "stopped"} {
		if r.logs.find(t, msg) == nil {
			t.Errorf("no %q log line", msg)
		}
	}
}

func TestRunDrainsInFlightRequests(t *testing.T) {
	agent := startAgent(t)
	release := make(chan struct{})
	started := make(chan struct{})
	r := startInstance(t, agent, Service{
		Name: "slow",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			fmt.Fprint(w, "done")
		}),
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	result := make(chan string, 1)
	go func() {
		resp, err := hc.Get("http://" + r.Addr() + "/")
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		result <- fmt.Sprint(resp.StatusCode, " close=", resp.Close)
	}()
	<-started
	r.cancel()
	// Run waits for the request; it is not cut off.
	waitFor(t, 5*time.Second, "drain to begin", func() bool { return r.logs.find(t, "deregistered") != nil })
	select {
	case <-r.done:
		t.Fatalf("Run returned with a request in flight: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if got := <-result; got != "200 close=true" {
		t.Fatalf("in-flight request: %s, want 200 with Connection: close", got)
	}
	if err := r.wait(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRunDrainDeadline(t *testing.T) {
	agent := startAgent(t)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	r := startInstance(t, agent, Service{
		Name: "stuck",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release // ignores its context on purpose
		}),
	}, "DRAIN_TIMEOUT", "200ms")
	go func() {
		resp, err := http.Get("http://" + r.Addr() + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	begin := time.Now()
	r.stop(t)
	if took := time.Since(begin); took > 3*time.Second {
		t.Fatalf("shutdown took %v with a 200ms drain timeout", took)
	}
	if r.logs.find(t, "drain deadline passed, closing the remaining connections") == nil {
		t.Fatal("no log line about the drain deadline")
	}
}

func TestRunStartFailures(t *testing.T) {
	agent := startAgent(t)
	t.Run("setup error", func(t *testing.T) {
		boom := errors.New("boom")
		err := Run(context.Background(), Service{Name: "s", LookupEnv: testEnv(agent), Stdout: &logBuffer{},
			Setup: func(context.Context, *Instance) (http.Handler, error) { return nil, boom }})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
		err = Run(context.Background(), Service{Name: "s", LookupEnv: testEnv(agent, "PORT", port), Stdout: &logBuffer{}})
		if err == nil || !strings.Contains(err.Error(), "PORT") {
			t.Fatalf("err = %v, want one naming PORT", err)
		}
	})
	t.Run("no agent", func(t *testing.T) {
		dead := fmt.Sprintf("127.0.0.1:%d", refusingPort(t))
		begin := time.Now()
		err := Run(context.Background(), Service{Name: "s", LookupEnv: testEnv(dead, "START_TIMEOUT", "300ms"), Stdout: &logBuffer{}})
		if err == nil || time.Since(begin) > 3*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(begin))
		}
	})
	t.Run("config error", func(t *testing.T) {
		err := Run(context.Background(), Service{Name: "s", LookupEnv: testEnv(agent, "PORT", "x"), Stdout: &logBuffer{}})
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestReadinessChecks(t *testing.T) {
	agent := startAgent(t)
	var dbDown atomic.Bool
	r := startInstance(t, agent, Service{
		Name: "checked",
		Checks: map[string]func(context.Context) error{
			"db": func(context.Context) error {
				if dbDown.Load() {
					return errors.New("connection refused")
				}
				return nil
			},
		},
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + r.AdminAddr() + "/health/ready"
	if code, _ := get(t, hc, url); code != 200 {
		t.Fatalf("ready: %d", code)
	}
	dbDown.Store(true)
	code, body := get(t, hc, url)
	var got struct{ Failing map[string]string }
	_ = json.Unmarshal([]byte(body), &got)
	if code != 503 || got.Failing["db"] != "connection refused" {
		t.Fatalf("with the db down: %d %s", code, body)
	}
	// The agent's check sees it too and the catalog stops listing the instance as passing.
	c := consulClient(t, agent)
	waitFor(t, 5*time.Second, "check critical", func() bool {
		_, status := listed(t, c, "checked", r.ID())
		return status == api.HealthCritical
	})
	dbDown.Store(false)
	waitFor(t, 5*time.Second, "check passing", func() bool {
		_, status := listed(t, c, "checked", r.ID())
		return status == api.HealthPassing
	})
}

func TestReregistersWhenTheAgentLosesTheInstance(t *testing.T) {
	agent := startAgent(t)
	c := consulClient(t, agent)
	r := startInstance(t, agent, Service{Name: "sticky"}, "REREGISTER_INTERVAL", "50ms")
	if err := c.Agent().ServiceDeregister(r.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "registered again", func() bool {
		ok, status := listed(t, c, "sticky", r.ID())
		return ok && status == api.HealthPassing
	})
}

func TestBackgroundAndShutdownHooks(t *testing.T) {
	agent := startAgent(t)
	var order []string
	bgStopped := make(chan struct{})
	r := startInstance(t, agent, Service{
		Name: "hooks",
		Setup: func(ctx context.Context, in *Instance) (http.Handler, error) {
			in.Go(func(ctx context.Context) {
				<-ctx.Done()
				close(bgStopped)
			})
			in.OnShutdown(func(context.Context) { order = append(order, "first") })
			in.OnShutdown(func(context.Context) { order = append(order, "second") })
			return nil, nil
		},
	})
	r.stop(t)
	select {
	case <-bgStopped:
	default:
		t.Fatal("background work not stopped before Run returned")
	}
	if strings.Join(order, ",") != "second,first" {
		t.Fatalf("hooks ran as %v, want reverse order", order)
	}
}

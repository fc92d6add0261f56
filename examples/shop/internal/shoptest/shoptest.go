// Package shoptest runs the shop's services in-process for tests: an in-memory dev
// agent, chassis services served against it on loopback ports picked by the OS, and
// a client that finds them in the catalog as another service would.
//
//	agent := shoptest.StartAgent(t)
//	cat := agent.Start(t, catalogsvc.Service())
//	resp, err := http.Get(cat.URL + "/departments")           // one instance, directly
//	err = chassis.GetJSON(ctx, agent.Client(t), "http://catalog/departments", &deps) // any instance
//
// Everything started is stopped when the test ends (services before the agent).
package shoptest

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Agent is an in-process dev agent (internal/agent/agenttest.StartDev).
type Agent struct {
	Addr   string      // host:port of its HTTP API
	Consul *api.Client // a client of it, for the KV store and the catalog
}

// StartAgent starts a dev agent that stops when the test ends.
func StartAgent(t testing.TB) *Agent {
	t.Helper()
	a := agenttest.StartDev(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // before the agent's shutdown, which waits for them
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{Addr: a.HTTPAddr(), Consul: c}
}

// Service is a chassis service running in-process.
type Service struct {
	*chassis.Instance
	URL string // http://127.0.0.1:<port>, its API

	logs   *logBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned, with its error in err
	err    error
}

// Start runs svc against the agent and returns once it is registered and in the
// catalog. Its environment is only: BIND_ADDR=127.0.0.1, PORT=0, ADMIN_PORT=0,
// WOLKE_HTTP_ADDR (the agent), DEREGISTER_WAIT=10ms, DRAIN_TIMEOUT=5s,
// START_TIMEOUT=5s, ACCESS_LOG=false, then env ("KEY=value", overriding those);
// svc.LookupEnv and svc.Stdout are replaced. Its log is kept (Logs) and printed if
// the test fails. It is stopped gracefully when the test ends, unless Stop did so
// before.
func (a *Agent) Start(t testing.TB, svc chassis.Service, env ...string) *Service {
	t.Helper()
	vars := map[string]string{
		"BIND_ADDR":       "127.0.0.1",
		"PORT":            "0",
		"ADMIN_PORT":      "0",
		"WOLKE_HTTP_ADDR": a.Addr,
		"DEREGISTER_WAIT": "10ms",
		"DRAIN_TIMEOUT":   "5s",
		"START_TIMEOUT":   "5s",
		"ACCESS_LOG":      "false",
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("shoptest: env %q is not KEY=value", kv)
		}
		vars[k] = v
	}
	s := &Service{logs: &logBuffer{}, done: make(chan struct{})}
	svc.LookupEnv = func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	svc.Stdout = s.logs
	in, err := chassis.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	s.Instance = in
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.err = in.Run(ctx)
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("log of %s:\n%s", in.Name(), s.Logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !s.logs.has(`"msg":"ready"`) {
		select {
		case <-s.done:
			t.Fatalf("shoptest: %s stopped while starting: %v\n%s", svc.Name, s.err, s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("shoptest: %s not ready after 10s\n%s", svc.Name, s.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.URL = "http://" + in.Addr()
	return s
}

// Stop shuts the service down gracefully (deregisters, drains) and waits for it.
// Safe to call more than once.
func (s *Service) Stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("shoptest: %s: Run: %v", s.Name(), s.err)
			s.err = nil // reported once
		}
	case <-time.After(15 * time.Second):
		t.Errorf("shoptest: %s did not stop within 15s", s.Name())
	}
}

// Logs returns what the service has logged so far (JSON lines).
func (s *Service) Logs() string { return s.logs.String() }

// Client returns an HTTP client for which http://<service>/path means a passing
// instance of that service in the agent's catalog: the client of a chassis instance
// that is never served (named "shoptest"), closed when the test ends.
func (a *Agent) Client(t testing.TB) *http.Client {
	t.Helper()
	in, err := chassis.New(chassis.Service{
		Name: "shoptest",
		LookupEnv: func(k string) (string, bool) {
			if k == "WOLKE_HTTP_ADDR" {
				return a.Addr, true
			}
			return "", false
		},
		Stdout: &logBuffer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	return in.Client()
}

// logBuffer collects a service's log; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

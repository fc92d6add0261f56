// Package agenttest starts in-process agents for the tests of other packages (the
// agent package's own tests have their own helpers, since they cannot import this).
package agenttest

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/agent"
)

// StartDev starts an in-memory dev agent on free loopback ports (never the default
// ones), logging only with WOLKE_TEST_LOG set, stops it when the test ends, and returns
// it once it accepts writes.
func StartDev(t testing.TB) *agent.Agent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.ServerPort, cfg.SerfPort = 0, 0
	cfg.DNS.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	if os.Getenv("WOLKE_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("agent shutdown: %v", err)
		}
	})
	// Ready once a write succeeds: the dev server has elected itself.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	base := "http://" + a.HTTPAddr() + "/v1/kv/_ready"
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPut, base, strings.NewReader("x"))
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("dev agent did not accept a write in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodDelete, base, nil)
	if resp, err := hc.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	return a
}

package confsync

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent"
)

// startAgent starts an in-memory dev agent on free ports, stops it with the test and
// returns a client for it once it accepts writes.
func startAgent(t testing.TB) *api.Client {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.ServerPort, cfg.SerfPort = 0, 0 // never the default ports in tests
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
	// Watches hold several connections; a request cancelled while its connection was
	// being dialled leaves an unused connection in the pool, which the agent's drain
	// would wait 5 s for: close idle connections before the agent stops (cleanups run
	// last-registered first).
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the dev agent to accept a write", func() bool {
		_, err := c.KV().Put(&api.KVPair{Key: "_ready"}, nil)
		return err == nil
	})
	if _, err := c.KV().Delete("_ready", nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond every few milliseconds until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func put(t testing.TB, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

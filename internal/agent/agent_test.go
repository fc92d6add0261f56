package agent

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/memberlist"

	"github.com/wolke-platform/wolke/internal/membership"
)

// testLogger logs to stderr only with WOLKE_TEST_LOG=1, to keep test output readable.
func testLogger() *slog.Logger {
	if os.Getenv("WOLKE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startDev starts an in-memory dev agent on a free port and stops it with the test.
func startDev(t testing.TB, mutate ...func(*Config)) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dev = true
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.ServerPort, cfg.SerfPort = 0, 0
	cfg.DNS.Addr = "127.0.0.1:0"
	cfg.Gossip = fastGossip
	cfg.Logger = testLogger()
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := New(cfg)
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
			t.Errorf("shutdown: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !a.node.ReadReady() {
		if time.Now().After(deadline) {
			t.Fatal("dev agent did not become leader in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return a
}

// fastGossip shortens memberlist's timing for tests on loopback.
// The local profile sends a broadcast only RetransmitMult (2) × ⌈log10(n+1)⌉ times, so
// in a 4-node pool a message could miss a node until the next push-pull sync (15 s):
// the LAN retransmit factor and a 1 s sync keep test pools as reliable as real ones.
func fastGossip(c *membership.Config) {
	c.Memberlist = memberlist.DefaultLocalConfig()
	c.Memberlist.RetransmitMult = 4
	c.Memberlist.PushPullInterval = time.Second
}

func clientFor(t testing.TB, a *Agent) *api.Client {
	t.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = a.HTTPAddr()
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

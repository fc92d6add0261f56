package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/fsm"
	"github.com/wolke-platform/wolke/internal/state"
)

// waitFor polls cond until it holds or the deadline passes.
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

type server struct {
	node  *Node
	store *state.Store
}

func startServer(t testing.TB, dir string, mutate func(*Config)) *server {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.DataDir = dir
	cfg.Bootstrap = true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	tr := NewInmemTransport("n1")
	if dir != "" {
		tcp, err := NewTCPTransport("127.0.0.1:0", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		tr = tcp
	}
	n, err := New(cfg, fsm.New(st, nil), tr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "leadership", n.ReadReady)
	return &server{node: n, store: st}
}

func (s *server) put(t testing.TB, key, val string) uint64 {
	t.Helper()
	cmd, err := command.Encode(command.KVS, &command.KVSRequest{Op: command.KVSet, Entry: state.KVEntry{Key: key, Value: []byte(val)}})
	if err != nil {
		t.Fatal(err)
	}
	res, idx, err := s.node.Apply(context.Background(), cmd)
	if err != nil || res != true {
		t.Fatalf("apply %s: %v %v", key, res, err)
	}
	return idx
}

func TestInMemoryNodeAppliesAndReportsIndex(t *testing.T) {
	s := startServer(t, "", nil)
	defer s.node.Shutdown()
	i1 := s.put(t, "a", "1")
	i2 := s.put(t, "a", "2")
	if i2 <= i1 {
		t.Fatalf("indexes not increasing: %d then %d", i1, i2)
	}
	idx, e, _ := s.store.KVGet(nil, "a")
	if idx != i2 || string(e.Value) != "2" {
		t.Fatalf("store has %q at %d, want 2 at %d", e.Value, idx, i2)
	}
	if err := s.node.VerifyLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	if addr, id := s.node.Leader(); addr == "" || id != "n1" {
		t.Fatalf("leader %q %q", addr, id)
	}
}

func TestDurableRestartRestoresFromSnapshotAndLogTail(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) {
		c.SnapshotThreshold = 50
		c.TrailingLogs = 10
		c.SnapshotInterval = time.Hour // snapshots only when the test asks
	}
	s := startServer(t, dir, small)
	const n = 300
	for i := 0; i < n; i++ {
		s.put(t, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	if err := s.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// The tail after the snapshot must come from the log.
	for i := n; i < n+20; i++ {
		s.put(t, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	lastIdx := s.node.AppliedIndex()
	firstLog := s.node.raft.Stats()["last_snapshot_index"]
	if err := s.node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot on disk")
	}
	if firstLog == "0" {
		t.Fatal("snapshot index not recorded")
	}

	s2 := startServer(t, dir, small)
	defer s2.node.Shutdown()
	waitFor(t, 5*time.Second, "log replay", func() bool { return s2.node.AppliedIndex() >= lastIdx })
	_, all, _ := s2.store.KVList(nil, "k")
	if len(all) != n+20 {
		t.Fatalf("after restart %d keys, want %d", len(all), n+20)
	}
	for i, e := range all {
		if string(e.Value) != fmt.Sprint(i) {
			t.Fatalf("key %s = %q, want %d", e.Key, e.Value, i)
		}
	}
	// Indexes continue upward after a restart.
	if idx := s2.put(t, "after", "x"); idx <= lastIdx {
		t.Fatalf("index after restart %d, not above %d", idx, lastIdx)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"no id":        func(c *Config) { c.NodeID = "" },
		"lease > hb":   func(c *Config) { c.LeaderLeaseTimeout = c.HeartbeatTimeout * 2 },
		"batch 0":      func(c *Config) { c.MaxAppendEntries = 0 },
		"batch 5000":   func(c *Config) { c.MaxAppendEntries = 5000 },
		"threshold 0":  func(c *Config) { c.SnapshotThreshold = 0 },
		"retain 0":     func(c *Config) { c.SnapshotRetain = 0 },
		"tiny timeout": func(c *Config) { c.ElectionTimeout = time.Millisecond },
		"log store":    func(c *Config) { c.LogStore = "wal" },
	}
	for name, mutate := range cases {
		c := DefaultConfig()
		c.NodeID = "x"
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := DefaultConfig()
	c.NodeID = "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config rejected: %v", err)
	}
}

// TestDataDirKeepsItsLogEngine: a data dir written by one engine is read by it again
// whatever the configuration asks for, and a dir holding both is refused.
func TestDataDirKeepsItsLogEngine(t *testing.T) {
	for _, tc := range []struct{ first, then, file string }{
		{LogBoltDB, LogSegments, "raft.db"},
		{LogSegments, LogBoltDB, "log"},
	} {
		t.Run(tc.first, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, dir, func(c *Config) { c.LogStore = tc.first })
			idx := s.put(t, "k", "v")
			if err := s.node.Shutdown(); err != nil {
				t.Fatal(err)
			}
			s2 := startServer(t, dir, func(c *Config) { c.LogStore = tc.then })
			defer s2.node.Shutdown()
			waitFor(t, 5*time.Second, "log replay", func() bool { return s2.node.AppliedIndex() >= idx })
			if _, e, _ := s2.store.KVGet(nil, "k"); e == nil || string(e.Value) != "v" {
				t.Fatalf("after reopening a %s dir configured for %s: %+v", tc.first, tc.then, e)
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "raft"))
			for _, e := range entries {
				if (e.Name() == "raft.db" || e.Name() == "log") && e.Name() != tc.file {
					t.Fatalf("the %s dir grew a second log: %s", tc.first, e.Name())
				}
			}
		})
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "raft", "log"), 0o700)
	os.WriteFile(filepath.Join(dir, "raft", "raft.db"), nil, 0o600)
	if _, err := openLogStore(filepath.Join(dir, "raft"), LogSegments, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a dir with both logs was opened")
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestAcknowledgedWritesSurviveSIGKILL writes from 8 clients, kills the server with
// SIGKILL while writes are in flight, restarts it on the same data dir, and checks that
// every write that was answered "true" is there with its value. Three rounds, so the
// restarted server's own log and snapshots are killed too. It runs on both log engines.
func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	for _, engine := range []string{"segments", "boltdb"} {
		t.Run(engine, func(t *testing.T) { testAcknowledgedWritesSurviveSIGKILL(t, engine) })
	}
}

func testAcknowledgedWritesSurviveSIGKILL(t *testing.T, engine string) {
	dir := t.TempDir()
	// A low snapshot threshold makes the rounds cross snapshots and log compaction.
	extra := []string{"-snapshot-threshold", "500", "-snapshot-interval", "200ms", "-trailing-logs", "100", "-raft-log-store", engine}
	srv := startServer(t, dir, extra...)
	engineFile := map[string]string{"segments": "log", "boltdb": "raft.db"}[engine]
	if _, err := os.Stat(filepath.Join(dir, "raft", engineFile)); err != nil {
		t.Fatalf("the %s engine's %s is not in the data dir: %v", engine, engineFile, err)
	}
	acked := map[string]string{}
	var lastIndex uint64
	for round := 0; round < 3; round++ {
		kv := srv.client().KV()
		var mu sync.Mutex
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("r%d/w%d/%d", round, w, i)
					val := fmt.Sprintf("v-%d-%d-%d", round, w, i)
					ok, err := kvPut(kv, key, val)
					if err != nil {
						return // the server died under us: this write is unacknowledged
					}
					if ok {
						mu.Lock()
						acked[key] = val
						mu.Unlock()
						n.Add(1)
					}
				}
			}(w)
		}
		// Kill mid-stream once enough writes are acknowledged and a snapshot is on
		// disk, so that every restart recovers from a snapshot plus the log's tail
		// (a fast server can reach 800 writes before its first snapshot check).
		deadline := time.Now().Add(20 * time.Second)
		for (n.Load() < 800 || len(snapshotsOnDisk(dir)) == 0) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n.Load() < 800 {
			t.Fatalf("round %d: only %d writes acknowledged in 20s", round, n.Load())
		}
		if len(snapshotsOnDisk(dir)) == 0 {
			t.Fatalf("round %d: no snapshot on disk after %d writes and 20s", round, n.Load())
		}
		srv.kill()
		close(stop)
		wg.Wait()

		srv = startServer(t, dir, extra...)
		kv = srv.client().KV()
		pairs, meta, err := kv.List("r", &api.QueryOptions{RequireConsistent: true})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, p := range pairs {
			got[p.Key] = string(p.Value)
		}
		mu.Lock()
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("round %d: acknowledged write %s=%s lost after SIGKILL (got %q); %d acked in all", round, k, v, got[k], len(acked))
			}
		}
		t.Logf("round %d: %d acknowledged writes, all present after SIGKILL + restart", round, len(acked))
		mu.Unlock()
		if meta.LastIndex < lastIndex {
			t.Fatalf("index went backwards across restart: %d after %d", meta.LastIndex, lastIndex)
		}
		lastIndex = meta.LastIndex
	}
	// Snapshots were taken and old ones pruned (retain 2), so the data dir is bounded.
	if snaps := snapshotsOnDisk(dir); len(snaps) == 0 || len(snaps) > 2 {
		t.Fatalf("%d snapshots on disk, want 1..2: %v", len(snaps), snaps)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
}

// snapshotsOnDisk lists the finished snapshots in a server's data dir (one may be in
// progress, as a .tmp directory).
func snapshotsOnDisk(dir string) []string {
	all, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*"))
	var snaps []string
	for _, s := range all {
		if !strings.HasSuffix(s, ".tmp") {
			snaps = append(snaps, s)
		}
	}
	return snaps
}

// kvPut writes with the raw client call and reports the server's true/false answer.
func kvPut(kv *api.KV, key, val string) (bool, error) {
	_, err := kv.Put(&api.KVPair{Key: key, Value: []byte(val)}, nil)
	return err == nil, err
}

// TestRestartRestoresFromSnapshotPlusLogTail writes past the snapshot threshold, waits
// for a snapshot, writes a tail, stops cleanly, and checks the restart rebuilds both.
func TestRestartRestoresFromSnapshotPlusLogTail(t *testing.T) {
	dir := t.TempDir()
	extra := []string{"-snapshot-threshold", "200", "-snapshot-interval", "100ms", "-trailing-logs", "50"}
	srv := startServer(t, dir, extra...)
	kv := srv.client().KV()
	for i := 0; i < 600; i++ {
		if _, err := kv.Put(&api.KVPair{Key: "snap/" + strconv.Itoa(i), Value: []byte(strconv.Itoa(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var snapIdx uint64
	for snapIdx == 0 && time.Now().Before(deadline) {
		self, err := srv.client().Agent().Self()
		if err == nil {
			if raft, ok := self["Stats"]["raft"].(map[string]any); ok {
				snapIdx, _ = strconv.ParseUint(fmt.Sprint(raft["last_snapshot_index"]), 10, 64)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if snapIdx == 0 {
		t.Fatal("no snapshot taken after 600 writes with threshold 200")
	}
	for i := 600; i < 650; i++ {
		kv.Put(&api.KVPair{Key: "snap/" + strconv.Itoa(i), Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir, extra...)
	pairs, _, err := srv.client().KV().List("snap/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 650 {
		t.Fatalf("after restart %d keys, want 650", len(pairs))
	}
	for _, p := range pairs {
		if "snap/"+string(p.Value) != p.Key {
			t.Fatalf("key %s has value %q", p.Key, p.Value)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node-id")); err != nil {
		t.Fatal("node ID not persisted:", err)
	}
}

// TestSIGTERMFinishesInFlightRequests holds a blocking query open, sends SIGTERM, and
// checks that the query is answered (with the current data) and the agent exits 0.
func TestSIGTERMFinishesInFlightRequests(t *testing.T) {
	srv := startServer(t, t.TempDir())
	kv := srv.client().KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := kv.Get("k", nil)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		pair *api.KVPair
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		p, _, err := kv.Get("k", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		got <- answer{p, err}
	}()
	// Wait until the agent holds the query, then ask it to stop.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := srv.client().Agent().Metrics()
		if err == nil && blockingGauge(m) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("blocking query never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	select {
	case a := <-got:
		if a.err != nil || a.pair == nil || string(a.pair.Value) != "v" {
			t.Fatalf("in-flight blocking query during shutdown: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight query not answered within 10s of SIGTERM")
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func blockingGauge(m *api.MetricsInfo) float64 {
	for _, g := range m.Gauges {
		if g.Name == "wolke_http_blocking_queries" {
			return float64(g.Value)
		}
	}
	return 0
}

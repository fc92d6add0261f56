package twopc_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/pkg/chassis"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCoordinator runs a chassis instance of service "checkout" whose coordinator
// recovers the log while it holds the leader lock; stop shuts it down gracefully.
func startCoordinator(t *testing.T, w *world) (in *chassis.Instance, stop func()) {
	t.Helper()
	logs := &syncBuffer{}
	env := map[string]string{"BIND_ADDR": "127.0.0.1", "WOLKE_HTTP_ADDR": w.addr, "DEREGISTER_WAIT": "10ms",
		"DRAIN_TIMEOUT": "5s", "START_TIMEOUT": "5s", "ACCESS_LOG": "false"}
	in, err := chassis.New(chassis.Service{
		Name: "checkout",
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			c := &twopc.Coordinator{Prefix: logPrefix, PrepareTimeout: prepareTimeout, ResendAfter: 50 * time.Millisecond, Now: w.clock.now}
			c.Start(in, 50*time.Millisecond)
			return http.NotFoundHandler(), nil
		},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Stdout:    logs,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	waitFor(t, 10*time.Second, "the instance to be ready", func() bool { return strings.Contains(logs.String(), `"msg":"ready"`) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("the instance did not stop")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", in.ID(), logs.String())
		}
	})
	return in, stop
}

// Two instances run recovery under the leader lock (chassis Elect): the leader
// finishes a transaction whose coordinator crashed after the decision; when the
// leader stops, the other instance takes over and finishes the next one.
func TestRecoveryByTheLeader(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a, stopA := startCoordinator(t, w)
	b, stopB := startCoordinator(t, w)
	w.coord.Hooks = &twopc.Hooks{AfterDecision: func(string, twopc.State) error { return errCrash }}

	leader := func() string {
		kv, _, err := w.consul.KV().Get(logPrefix+twopc.LeaderKey, nil)
		if err != nil || kv == nil || kv.Session == "" {
			return ""
		}
		return string(kv.Value)
	}
	finished := func(txid string) func() bool {
		return func() bool {
			recs, err := twopc.ReadLog(ctx, w.consul, logPrefix)
			for _, r := range recs {
				if r.TxID == txid {
					return err == nil && r.State == twopc.Done
				}
			}
			return false
		}
	}

	if _, err := w.coord.Run(ctx, "t1", w.branches("t1")); !errors.Is(err, errCrash) {
		t.Fatalf("Run: %v, want the injected crash", err)
	}
	waitFor(t, 10*time.Second, "the leader to finish t1", finished("t1"))
	first := leader()
	if first != a.ID() && first != b.ID() {
		t.Fatalf("leader %q is neither %s nor %s", first, a.ID(), b.ID())
	}
	if first == a.ID() {
		stopA()
	} else {
		stopB()
	}
	if _, err := w.coord.Run(ctx, "t2", w.branches("t2")); !errors.Is(err, errCrash) {
		t.Fatalf("Run: %v, want the injected crash", err)
	}
	waitFor(t, 10*time.Second, "the new leader to finish t2", finished("t2"))
	if second := leader(); second == first || second == "" {
		t.Fatalf("leader after the first stopped: %q (first %q)", second, first)
	}
	s := w.snapshot(t)
	if p := s.check(); len(p) > 0 {
		t.Fatal(p)
	}
	if s.log["t1"].Decision != twopc.Commit || s.log["t2"].Decision != twopc.Commit {
		t.Fatalf("decisions %s and %s, want commit", s.log["t1"].Decision, s.log["t2"].Decision)
	}
}

package twopc

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

func TestRecordNext(t *testing.T) {
	now := time.Unix(1000, 0)
	base := Record{TxID: "t1", State: Preparing, Created: now, Deadline: now.Add(time.Second)}
	tests := []struct {
		from   State
		to     State
		ok     bool
		reason string
	}{
		{Preparing, Commit, true, ""},
		{Preparing, Abort, true, "out of stock"},
		{Preparing, Done, false, ""},
		{Preparing, Preparing, false, ""},
		{Commit, Done, true, ""},
		{Abort, Done, true, ""},
		{Commit, Abort, false, ""},
		{Abort, Commit, false, ""},
		{Commit, Commit, false, ""},
		{Done, Done, false, ""},
		{Done, Commit, false, ""},
		{Done, Abort, false, ""},
	}
	for _, tt := range tests {
		r := base
		r.State = tt.from
		if tt.from == Commit || tt.from == Abort || tt.from == Done {
			r.Decision = Commit
		}
		got, err := r.Next(tt.to, tt.reason, now.Add(time.Millisecond))
		if tt.ok != (err == nil) {
			t.Errorf("%s -> %s: err = %v, want ok %v", tt.from, tt.to, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrTransition) {
				t.Errorf("%s -> %s: err = %v, want ErrTransition", tt.from, tt.to, err)
			}
			if got.State != tt.from {
				t.Errorf("%s -> %s: refused change still changed the state to %s", tt.from, tt.to, got.State)
			}
			continue
		}
		if got.State != tt.to {
			t.Errorf("%s -> %s: state %s", tt.from, tt.to, got.State)
		}
		switch tt.to {
		case Commit, Abort:
			if got.Decision != tt.to || !got.Decided.Equal(now.Add(time.Millisecond)) || got.Reason != tt.reason {
				t.Errorf("%s -> %s: decision %q decided %v reason %q", tt.from, tt.to, got.Decision, got.Decided, got.Reason)
			}
		case Done:
			if got.Decision != r.Decision {
				t.Errorf("done lost the decision: %q", got.Decision)
			}
		}
	}
}

func TestRecordOutcome(t *testing.T) {
	now := time.Unix(1000, 0)
	r := Record{State: Preparing, Deadline: now}
	if got := r.Outcome(now); got != Preparing {
		t.Errorf("preparing at the deadline: %s, want preparing", got)
	}
	if got := r.Outcome(now.Add(time.Nanosecond)); got != Abort {
		t.Errorf("preparing past the deadline: %s, want abort (presumed)", got)
	}
	for _, d := range []State{Commit, Abort} {
		r := Record{State: d, Decision: d, Deadline: now}
		if got := r.Outcome(now.Add(time.Hour)); got != d {
			t.Errorf("%s: outcome %s", d, got)
		}
		r, _ = r.Next(Done, "", now)
		if got := r.Outcome(now.Add(time.Hour)); got != d {
			t.Errorf("done after %s: outcome %s", d, got)
		}
	}
}

func TestValidTxID(t *testing.T) {
	for _, id := range []string{"o-0001", "A.b_c-9", "x"} {
		if err := validTxID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	for _, id := range []string{"", "leader", "a/b", "..", ".", "a b", "ü", string(long)} {
		if err := validTxID(id); !errors.Is(err, ErrBadTxID) {
			t.Errorf("%q: %v, want ErrBadTxID", id, err)
		}
	}
}

func testConsul(t *testing.T) *api.Client {
	t.Helper()
	a := agenttest.StartDev(t)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The log in the KV store: create once, one decision wins a race, done keeps it.
func TestLogTransitions(t *testing.T) {
	ctx := context.Background()
	l := newLog(testConsul(t), "log-test")
	now := time.Now()
	rec := Record{TxID: "t1", State: Preparing, Created: now, Deadline: now.Add(time.Minute),
		Participants: []Member{{Name: "a", URL: "http://a"}}}
	e, err := l.create(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.create(ctx, rec); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, ok, err := l.get(ctx, "t1")
	if err != nil || !ok || got.State != Preparing || got.index != e.index || l.key("t1") != "log-test/t1" {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}

	// Many writers race from preparing, half for commit, half for abort: one wins and
	// every loser sees the winner's decision.
	const writers = 16
	var wg sync.WaitGroup
	results := make([]entry, writers)
	wins := make([]bool, writers)
	for i := range writers {
		wg.Go(func() {
			to := Commit
			if i%2 == 1 {
				to = Abort
			}
			r, won, err := l.transition(ctx, e, to, "writer", time.Now())
			if err != nil {
				t.Error(err)
			}
			results[i], wins[i] = r, won
		})
	}
	wg.Wait()
	winners := 0
	decision := results[0].Decision
	for i := range writers {
		if wins[i] {
			winners++
		}
		if results[i].Decision != decision {
			t.Errorf("writer %d sees %s, writer 0 sees %s", i, results[i].Decision, decision)
		}
	}
	if winners != 1 {
		t.Fatalf("%d writers won the decision, want 1", winners)
	}
	cur, _, _ := l.get(ctx, "t1")
	if cur.State != decision {
		t.Fatalf("log says %s, the writers saw %s", cur.State, decision)
	}
	// A late decision from an old index is not taken.
	if r, won, err := l.transition(ctx, e, Commit, "", time.Now()); err != nil || won || r.State != decision {
		t.Fatalf("late decision: %+v won=%v err=%v", r.Record, won, err)
	}
	done, won, err := l.transition(ctx, cur, Done, "", time.Now())
	if err != nil || !won || done.State != Done || done.Decision != decision {
		t.Fatalf("done: %+v won=%v err=%v", done.Record, won, err)
	}
	// Done from an older index: the record is returned as it is.
	if r, won, err := l.transition(ctx, cur, Done, "", time.Now()); err != nil || won || r.State != Done {
		t.Fatalf("done twice: %+v won=%v err=%v", r.Record, won, err)
	}
	if _, _, err := l.transition(ctx, done, Commit, "", time.Now()); !errors.Is(err, ErrTransition) {
		t.Fatalf("decision after done: %v, want ErrTransition", err)
	}

	// The list skips the leader lock and keys that are not records.
	if _, err := l.consul.KV().Put(&api.KVPair{Key: "log-test/leader", Value: []byte("orders-1")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.consul.KV().Put(&api.KVPair{Key: "log-test/junk", Value: []byte("{")}, nil); err != nil {
		t.Fatal(err)
	}
	list, err := l.list(ctx)
	if err != nil || len(list) != 1 || list[0].TxID != "t1" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := l.remove(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.get(ctx, "t1"); ok {
		t.Fatal("removed record still there")
	}
}

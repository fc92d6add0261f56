package twopc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// branches is a checkout of one piece of a0, on the first instance of each participant.
func (w *world) branches(txid string) []twopc.Branch {
	return []twopc.Branch{
		{Name: "stock", URL: w.urls["stock"][0], Payload: []item{{ID: "a0", Qty: 1}}},
		{Name: "payments", URL: w.urls["payments"][0], Payload: payRequest{Amount: 100}},
		{Name: "orders", URL: w.urls["orders"][0], Payload: map[string]string{"id": txid}},
	}
}

// A coordinator paused after the votes (all yes) while recovery presumes the abort:
// its commit loses the CAS, Run reports the abort, and every participant aborts.
// Once by the coordinator's Recover, once by a participant's in-doubt resolution.
func TestPresumedAbortRace(t *testing.T) {
	for _, by := range []string{"recover", "participant"} {
		t.Run(by, func(t *testing.T) {
			w := newWorld(t)
			ctx := context.Background()
			paused, resume := make(chan struct{}), make(chan struct{})
			w.coord.Hooks = &twopc.Hooks{BeforeDecision: func(txid string, d twopc.State) error {
				if d != twopc.Commit {
					t.Errorf("the votes say %s, want commit", d)
				}
				close(paused)
				<-resume
				return nil
			}}
			type ran struct {
				out *twopc.Outcome
				err error
			}
			done := make(chan ran)
			go func() {
				out, err := w.coord.Run(ctx, "t1", w.branches("t1"))
				done <- ran{out, err}
			}()
			<-paused
			w.clock.forward(prepareTimeout + time.Second)
			switch by {
			case "recover":
				st, err := w.coord.Recover(ctx)
				if err != nil || st.PresumedAborted != 1 {
					t.Fatalf("Recover: %+v, %v; want one presumed abort", st, err)
				}
			case "participant":
				n, err := w.servers["payments"][1].Resolve(ctx)
				if err != nil || n != 1 {
					t.Fatalf("Resolve: %d, %v; want one settled", n, err)
				}
			}
			close(resume)
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.out.Committed || !strings.HasPrefix(r.out.Reason, "presumed abort") {
				t.Fatalf("Run: committed=%v reason %q; want the presumed abort", r.out.Committed, r.out.Reason)
			}
			waitFor(t, 5*time.Second, "the log to be done", func() bool {
				st, err := w.coord.Recover(ctx)
				return err == nil && st.Open == 0
			})
			s := w.snapshot(t)
			if p := s.check(); len(p) > 0 {
				t.Fatal(p)
			}
			if s.counts["a0"] != s.initial["a0"] {
				t.Fatalf("a0: %d left of %d after an abort", s.counts["a0"], s.initial["a0"])
			}
		})
	}
}

func post(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: %d %q", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// The participant endpoints do only what the log says: a prepare for a transaction
// the log lists as preparing with this participant and this payload, a commit or
// abort the log has decided. Anyone may call them.
func TestServerFollowsTheLog(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	stockURL := w.urls["stock"][0]
	code := func(m map[string]any) string {
		r, _ := m["refusal"].(map[string]any)
		c, _ := r["code"].(string)
		return c
	}

	// A transaction that is not in the log.
	status, m := post(t, stockURL+"/prepare", map[string]any{"txid": "nope", "participant": "stock", "payload": []item{{ID: "a0", Qty: 1}}})
	if status != 200 || m["vote"] != "no" || code(m) != twopc.CodeUnknown {
		t.Fatalf("prepare of an unknown transaction: %d %v", status, m)
	}

	// A transaction whose coordinator is paused before the decision: the payload must
	// be the logged one, the participant a listed one; commit is refused until logged.
	paused, resume := make(chan struct{}), make(chan struct{})
	w.coord.Hooks = &twopc.Hooks{AfterBegin: func(string) error { close(paused); <-resume; return nil }}
	done := make(chan *twopc.Outcome)
	go func() {
		out, err := w.coord.Run(ctx, "t1", w.branches("t1")[:2]) // stock and payments
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	<-paused
	status, m = post(t, stockURL+"/prepare", map[string]any{"txid": "t1", "participant": "stock", "payload": []item{{ID: "a0", Qty: 40}}})
	if status != 200 || m["vote"] != "no" || code(m) != twopc.CodeMismatch {
		t.Fatalf("prepare of another payload: %d %v", status, m)
	}
	status, m = post(t, w.urls["orders"][0]+"/prepare", map[string]any{"txid": "t1", "participant": "orders", "payload": map[string]string{"id": "t1"}})
	if status != 200 || m["vote"] != "no" || code(m) != twopc.CodeNotAsked {
		t.Fatalf("prepare by a participant not listed: %d %v", status, m)
	}
	status, m = post(t, stockURL+"/prepare", map[string]any{"txid": "t1", "participant": "payments", "payload": []item{}})
	if status != 400 {
		t.Fatalf("prepare naming another participant: %d %v", status, m)
	}
	for _, d := range []string{"commit", "abort"} {
		if status, m = post(t, stockURL+"/"+d, map[string]any{"txid": "t1", "participant": "stock"}); status != 409 {
			t.Fatalf("%s before the decision: %d %v", d, status, m)
		}
	}
	close(resume)
	out := <-done
	if !out.Committed || !out.Done {
		t.Fatalf("Run: %+v", out)
	}
	// Decided commit: an abort is refused, a repeated commit is fine, a late prepare is refused.
	if status, m = post(t, stockURL+"/abort", map[string]any{"txid": "t1", "participant": "stock"}); status != 409 {
		t.Fatalf("abort of a committed transaction: %d %v", status, m)
	}
	if status, m = post(t, stockURL+"/commit", map[string]any{"txid": "t1", "participant": "stock"}); status != 200 {
		t.Fatalf("commit again: %d %v", status, m)
	}
	status, m = post(t, stockURL+"/prepare", map[string]any{"txid": "t1", "participant": "stock", "payload": []item{{ID: "a0", Qty: 1}}})
	if status != 200 || m["vote"] != "no" || code(m) != twopc.CodeDecided {
		t.Fatalf("prepare after the decision: %d %v", status, m)
	}
	if s := w.snapshot(t); s.counts["a0"] != s.initial["a0"]-1 {
		t.Fatalf("a0: %d of %d, want one sold", s.counts["a0"], s.initial["a0"])
	}

	// Not JSON, not POST, an unknown endpoint, a bad transaction ID.
	resp, err := http.Post(stockURL+"/prepare", "application/json", strings.NewReader("{"))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad JSON: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if resp, err = http.Get(stockURL + "/prepare"); err != nil || resp.StatusCode != 405 {
		t.Fatalf("GET: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if status, _ = post(t, stockURL+"/frobnicate", map[string]any{}); status != 404 {
		t.Fatalf("unknown endpoint: %d", status)
	}
	if status, _ = post(t, stockURL+"/commit", map[string]any{"txid": "../x", "participant": "stock"}); status != 400 {
		t.Fatalf("bad txid: %d", status)
	}
}

// Run refuses what cannot be a transaction, and a transaction ID used before.
func TestRunArguments(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, tc := range []struct {
		txid     string
		branches []twopc.Branch
	}{
		{"leader", w.branches("x")},
		{"a/b", w.branches("x")},
		{"t", nil},
		{"t", []twopc.Branch{{Name: "stock", URL: w.urls["stock"][0]}, {Name: "stock", URL: w.urls["stock"][1]}}},
		{"t", []twopc.Branch{{Name: "stock"}}},
	} {
		if _, err := w.coord.Run(ctx, tc.txid, tc.branches); err == nil {
			t.Errorf("Run(%q, %d branches) did not fail", tc.txid, len(tc.branches))
		}
	}
	if out, err := w.coord.Run(ctx, "t2", w.branches("t2")); err != nil || !out.Committed {
		t.Fatalf("Run: %+v %v", out, err)
	}
	if _, err := w.coord.Run(ctx, "t2", w.branches("t2")); !errors.Is(err, twopc.ErrExists) {
		t.Fatalf("Run with a used ID: %v, want ErrExists", err)
	}
}

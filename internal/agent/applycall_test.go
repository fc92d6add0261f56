package agent

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/state"
)

func TestApplyReplyRoundTrip(t *testing.T) {
	txn := &command.TxnResponse{Results: []state.TxnResult{{Entry: &state.KVEntry{Key: "k", Value: []byte("v"), ModifyIndex: 9}}}}
	tests := []struct {
		name    string
		res     any
		err     error
		wantErr error // errors.Is target; nil: no error
		retry   bool  // the sender may send it again
	}{
		{name: "nil", res: nil},
		{name: "true", res: true},
		{name: "false", res: false},
		{name: "txn", res: txn},
		{name: "not leader before enqueue", err: fmt.Errorf("%w: %w", consensus.ErrNotLeader, raft.ErrNotLeader), wantErr: errRejected, retry: true},
		{name: "rejected", err: errRejected, wantErr: errRejected, retry: true},
		{name: "leadership lost", err: fmt.Errorf("%w: %w", consensus.ErrNotLeader, raft.ErrLeadershipLost), wantErr: raft.ErrLeadershipLost},
		{name: "timeout", err: fmt.Errorf("%w: %w", consensus.ErrTimeout, raft.ErrEnqueueTimeout), wantErr: consensus.ErrTimeout},
		{name: "shutdown", err: consensus.ErrShutdown, wantErr: consensus.ErrShutdown},
		{name: "no leader", err: consensus.ErrNoLeader, wantErr: consensus.ErrNoLeader},
		{name: "session", err: fmt.Errorf("lock: %w", state.ErrSessionNotFound), wantErr: state.ErrSessionNotFound},
		{name: "session exists", err: state.ErrSessionExists, wantErr: state.ErrSessionExists},
		{name: "node ID", err: state.ErrNodeIDConflict, wantErr: state.ErrNodeIDConflict},
		{name: "other", err: errors.New("fsm: unknown KV operation \"x\"")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, idx, err := decodeApplyReply(encodeApplyReply(tt.res, 42, tt.err))
			if idx != 42 {
				t.Errorf("index %d, want 42", idx)
			}
			if tt.err == nil {
				if err != nil {
					t.Fatalf("err %v", err)
				}
				if !reflect.DeepEqual(res, tt.res) {
					t.Fatalf("result %#v, want %#v", res, tt.res)
				}
				return
			}
			if tt.wantErr == nil && (err == nil || err.Error() != tt.err.Error()) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v is not %v", err, tt.wantErr)
			}
			if got := errors.Is(err, errRejected); got != tt.retry {
				t.Fatalf("retry = %v, want %v (%v)", got, tt.retry, err)
			}
		})
	}
}

func TestFollowerKVWritesPassCommandsToLeader(t *testing.T) {
	servers := startThreeServers(t, "fc")
	leader := leaderOf(servers)
	var followers []*Agent
	for _, s := range servers {
		if s != leader {
			followers = append(followers, s)
		}
	}
	served := func() float64 { return testutil.ToFloat64(leader.callMetrics.served) }

	// A leader that does not accept calls (an older version) still gets the write,
	// as a forwarded HTTP request.
	leader.mux.HandleCalls(nil)
	if code, body := rawRequest(t, followers[0], "PUT", "/v1/kv/old/1", []byte("v1")); code != 200 || body != "true" {
		t.Fatalf("put through a follower to a leader without calls: %d %q", code, body)
	}
	if served() != 0 {
		t.Fatalf("leader without calls served %v calls", served())
	}
	leader.mux.HandleCalls(leader.serveCall)

	f := followers[1]
	steps := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"PUT", "/v1/kv/new/1", "v1", 200, "true"},
		{"PUT", "/v1/kv/new/1?cas=1", "v2", 200, "false"},
		{"PUT", "/v1/kv/new/1?acquire=00000000-0000-0000-0000-000000000001", "v3", 0, ""}, // same as the leader's
		{"DELETE", "/v1/kv/new/1", "", 200, "true"},
		{"PUT", "/v1/kv/new/2", "v1", 200, "true"},
	}
	for _, s := range steps {
		code, body := rawRequest(t, f, s.method, s.path, []byte(s.body))
		if s.code == 0 {
			// An error from the state machine: the follower must answer what the
			// leader answers.
			lc, lb := rawRequest(t, leader, s.method, s.path, []byte(s.body))
			if code != lc || body != lb {
				t.Fatalf("%s %s: follower %d %q, leader %d %q", s.method, s.path, code, body, lc, lb)
			}
			if code < 400 {
				t.Fatalf("%s %s: %d %q, want an error", s.method, s.path, code, body)
			}
			continue
		}
		if code != s.code || body != s.want {
			t.Fatalf("%s %s through a follower: %d %q, want %d %q", s.method, s.path, code, body, s.code, s.want)
		}
	}
	if got := served(); got != float64(len(steps)) {
		t.Fatalf("leader applied %v commands for followers, want %d", got, len(steps))
	}
	// Bad input is refused by the follower itself, as the leader refuses it, and
	// nothing reaches the leader.
	for _, path := range []string{"/v1/kv/new/2?cas=abc", "/v1/kv/new/2?flags=-1", "/v1/kv/"} {
		code, body := rawRequest(t, f, "PUT", path, []byte("x"))
		lc, lb := rawRequest(t, leader, "PUT", path, []byte("x"))
		if code != 400 || code != lc || body != lb {
			t.Fatalf("PUT %s: follower %d %q, leader %d %q, want the same 400", path, code, body, lc, lb)
		}
	}
	if got := served(); got != float64(len(steps)) {
		t.Fatalf("bad input reached the leader: %v commands applied, want %d", got, len(steps))
	}
	kv := clientFor(t, leader).KV()
	for key, want := range map[string]string{"old/1": "v1", "new/2": "v1"} {
		p, _, err := kv.Get(key, &api.QueryOptions{RequireConsistent: true})
		if err != nil || p == nil || string(p.Value) != want {
			t.Fatalf("%s on the leader: %+v %v", key, p, err)
		}
	}
	if p, _, err := kv.Get("new/1", nil); err != nil || p != nil {
		t.Fatalf("deleted key on the leader: %+v %v", p, err)
	}
}

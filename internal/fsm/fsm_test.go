package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

func newFSM(t testing.TB) *FSM {
	t.Helper()
	s, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	return New(s, nil)
}

func logOf(t testing.TB, idx uint64, typ command.Type, req any) *raft.Log {
	t.Helper()
	data, err := command.Encode(typ, req)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: idx, Type: raft.LogCommand, Data: data}
}

func kv(op command.KVSOp, key, val string, cas uint64) *command.KVSRequest {
	return &command.KVSRequest{Op: op, Entry: state.KVEntry{Key: key, Value: []byte(val), ModifyIndex: cas}}
}

func TestApplyBatchResults(t *testing.T) {
	f := newFSM(t)
	logs := []*raft.Log{
		logOf(t, 1, command.KVS, kv(command.KVSet, "a", "1", 0)),
		logOf(t, 2, command.KVS, kv(command.KVCAS, "a", "2", 99)), // stale
		logOf(t, 3, command.KVS, kv(command.KVCAS, "a", "3", 1)),
		{Index: 4, Type: raft.LogNoop},
		logOf(t, 5, command.KVS, kv(command.KVCAS, "b", "x", 0)),
		logOf(t, 6, command.KVS, kv(command.KVSOp("bogus"), "c", "", 0)),
	}
	got := f.ApplyBatch(logs)
	want := []any{true, false, true, nil, true}
	if !reflect.DeepEqual(got[:5], want) {
		t.Fatalf("results %v, want %v", got[:5], want)
	}
	if err, ok := got[5].(error); !ok || !errors.Is(err, ErrUnknownOp) {
		t.Fatalf("bogus op result %v, want ErrUnknownOp", got[5])
	}
	idx, e, _ := f.Store().KVGet(nil, "a")
	if idx != 3 || string(e.Value) != "3" || e.CreateIndex != 1 {
		t.Fatalf("a = %+v at %d", e, idx)
	}
}

func TestUnknownCommand(t *testing.T) {
	f := newFSM(t)
	ignorable := &raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{command.Version, byte(command.IgnoreUnknown | 77), 0xc0}}
	if got := f.Apply(ignorable); got != nil {
		t.Fatalf("ignorable unknown command returned %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown command did not stop the state machine")
		}
	}()
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{command.Version, 77, 0xc0}})
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := newFSM(t)
	const n = 5000
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		logs = append(logs, logOf(t, uint64(i), command.KVS, kv(command.KVSet, fmt.Sprintf("k/%05d", i), fmt.Sprintf("v%d", i), 0)))
	}
	for i := 1; i <= n; i += 10 {
		logs = append(logs, logOf(t, uint64(n+i), command.KVS, kv(command.KVDelete, fmt.Sprintf("k/%05d", i), "", 0)))
	}
	src.ApplyBatch(logs)
	var buf bytes.Buffer
	snap := src.Store().Snapshot()
	if err := WriteSnapshot(&buf, snap); err != nil {
		t.Fatal(err)
	}
	snap.Close()

	dst := newFSM(t)
	abandon := dst.Store().AbandonCh()
	if err := ReadSnapshot(bytes.NewReader(buf.Bytes()), dst.Store()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abandon:
	default:
		t.Fatal("restore did not wake readers of the old state")
	}
	_, want, _ := src.Store().KVList(nil, "")
	_, got, _ := dst.Store().KVList(nil, "")
	if len(got) != n-n/10 || !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %d entries, want %d identical ones", len(got), len(want))
	}
	// Deleted keys keep reporting their deletion index after a restore.
	if idx, _, _ := dst.Store().KVGet(nil, "k/00001"); idx != n+1 {
		t.Fatalf("deleted key index %d after restore, want %d", idx, n+1)
	}
	if dst.Store().Index() != src.Store().Index() {
		t.Fatalf("store index %d, want %d", dst.Store().Index(), src.Store().Index())
	}
}

func TestSnapshotRejectsCorruption(t *testing.T) {
	src := newFSM(t)
	src.ApplyBatch([]*raft.Log{logOf(t, 1, command.KVS, kv(command.KVSet, "keep", "me", 0))})
	var buf bytes.Buffer
	snap := src.Store().Snapshot()
	if err := WriteSnapshot(&buf, snap); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	full := buf.Bytes()
	flipped := append([]byte(nil), full...)
	flipped[len(flipped)-1] ^= 0x01 // the record count in the end record
	cases := map[string][]byte{
		"empty":       nil,
		"bad header":  append([]byte("NOTASNAP!!"), full[10:]...),
		"truncated":   full[:len(full)-3],
		"no end":      full[:len(full)-2],
		"bad count":   flipped,
		"only header": full[:10],
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst := newFSM(t)
			dst.ApplyBatch([]*raft.Log{logOf(t, 1, command.KVS, kv(command.KVSet, "existing", "x", 0))})
			err := ReadSnapshot(bytes.NewReader(data), dst.Store())
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if _, e, _ := dst.Store().KVGet(nil, "existing"); e == nil {
				t.Fatal("failed restore changed the store")
			}
		})
	}
}

func TestSessionsAndLocksSurviveSnapshot(t *testing.T) {
	src := newFSM(t)
	now := time.Now().UnixNano()
	res := src.ApplyBatch([]*raft.Log{
		logOf(t, 1, command.Session, &command.SessionRequest{Op: command.SessionCreate,
			Session: state.Session{ID: "s1", Node: "n1", Behavior: state.BehaviorDelete, LockDelay: time.Second, TTL: "10s"}}),
		logOf(t, 2, command.KVS, &command.KVSRequest{Op: command.KVLock, Entry: state.KVEntry{Key: "lead", Value: []byte("me"), Session: "s1"}, Now: now}),
		logOf(t, 3, command.KVS, &command.KVSRequest{Op: command.KVLock, Entry: state.KVEntry{Key: "other", Session: "nope"}, Now: now}),
	})
	if res[0] != true || res[1] != true {
		t.Fatalf("results %v", res)
	}
	if err, ok := res[2].(error); !ok || !errors.Is(err, state.ErrSessionNotFound) {
		t.Fatalf("lock with an unknown session: %v", res[2])
	}
	var buf bytes.Buffer
	snap := src.Store().Snapshot()
	if err := WriteSnapshot(&buf, snap); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	dst := newFSM(t)
	if err := ReadSnapshot(&buf, dst.Store()); err != nil {
		t.Fatal(err)
	}
	_, sess, _ := dst.Store().SessionGet(nil, "s1")
	_, e, _ := dst.Store().KVGet(nil, "lead")
	if sess == nil || sess.Behavior != state.BehaviorDelete || sess.TTL != "10s" || e == nil || e.Session != "s1" || e.LockIndex != 1 {
		t.Fatalf("restored session %+v, key %+v", sess, e)
	}
	// The restored session still governs its key: destroying it deletes the key.
	dst.ApplyBatch([]*raft.Log{logOf(t, 4, command.Session, &command.SessionRequest{Op: command.SessionDestroy, Session: state.Session{ID: "s1"}, Now: now})})
	if _, e, _ := dst.Store().KVGet(nil, "lead"); e != nil {
		t.Fatalf("ephemeral key survived its session: %+v", e)
	}
}

package state

import (
	"errors"
	"testing"
	"time"
)

func lock(t *testing.T, s *Store, idx uint64, key, sess string, now time.Time) bool {
	t.Helper()
	var ok bool
	apply(t, s, func(tx *Txn) (err error) {
		ok, err = tx.KVLock(idx, &KVEntry{Key: key, Value: []byte(sess), Session: sess}, now)
		return err
	})
	return ok
}

func TestLocksFollowConsulSemantics(t *testing.T) {
	s := newTestStore(t)
	t0 := time.Unix(1000, 0)
	for _, id := range []string{"a", "b"} {
		apply(t, s, func(tx *Txn) error {
			return tx.SessionCreate(1, &Session{ID: id, Node: "n1", Behavior: BehaviorRelease, LockDelay: 15 * time.Second})
		})
	}
	if !lock(t, s, 2, "leader", "a", t0) {
		t.Fatal("first acquire failed")
	}
	_, e, _ := s.KVGet(nil, "leader")
	if e.Session != "a" || e.LockIndex != 1 || e.CreateIndex != 2 {
		t.Fatalf("after acquire: %+v", e)
	}
	if lock(t, s, 3, "leader", "b", t0) {
		t.Fatal("a second session took a held lock")
	}
	if !lock(t, s, 4, "leader", "a", t0) {
		t.Fatal("the holder could not re-acquire")
	}
	if _, e, _ = s.KVGet(nil, "leader"); e.LockIndex != 1 || string(e.Value) != "a" || e.ModifyIndex != 4 {
		t.Fatalf("re-acquire must update the value without counting: %+v", e)
	}
	// A plain write keeps the lock.
	put(t, s, 5, "leader", "plain")
	if _, e, _ = s.KVGet(nil, "leader"); e.Session != "a" {
		t.Fatalf("a plain write dropped the lock: %+v", e)
	}
	var ok bool
	apply(t, s, func(tx *Txn) (err error) { ok, err = tx.KVUnlock(6, &KVEntry{Key: "leader", Session: "b"}); return })
	if ok {
		t.Fatal("another session released the lock")
	}
	apply(t, s, func(tx *Txn) (err error) {
		ok, err = tx.KVUnlock(7, &KVEntry{Key: "leader", Value: []byte("bye"), Session: "a"})
		return
	})
	if !ok {
		t.Fatal("the holder could not release")
	}
	if _, e, _ = s.KVGet(nil, "leader"); e.Session != "" || e.LockIndex != 1 || string(e.Value) != "bye" {
		t.Fatalf("after release: %+v", e)
	}
	// Released voluntarily: no lock-delay, b may take it at once, and LockIndex counts it.
	if !lock(t, s, 8, "leader", "b", t0) {
		t.Fatal("acquire after a release failed")
	}
	if _, e, _ = s.KVGet(nil, "leader"); e.LockIndex != 2 {
		t.Fatalf("LockIndex after the second holder: %d", e.LockIndex)
	}
	apply(t, s, func(tx *Txn) (err error) {
		_, err = tx.KVLock(9, &KVEntry{Key: "x", Session: "nope"}, t0)
		if !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("lock with an unknown session: %v", err)
		}
		return nil
	})
}

func TestSessionInvalidationReleasesOrDeletesAndDelays(t *testing.T) {
	cases := []struct {
		behavior  string
		wantValue bool
	}{
		{BehaviorRelease, true},
		{BehaviorDelete, false},
	}
	for _, tc := range cases {
		t.Run(tc.behavior, func(t *testing.T) {
			s := newTestStore(t)
			t0 := time.Unix(1000, 0)
			apply(t, s, func(tx *Txn) error {
				return tx.SessionCreate(1, &Session{ID: "a", Node: "n1", Behavior: tc.behavior, LockDelay: 10 * time.Second})
			})
			apply(t, s, func(tx *Txn) error { return tx.SessionCreate(1, &Session{ID: "b", Node: "n2"}) })
			lock(t, s, 2, "k1", "a", t0)
			lock(t, s, 3, "k2", "a", t0)
			put(t, s, 4, "free", "x")
			ws := NewWatchSet()
			s.KVGet(ws, "k1")
			apply(t, s, func(tx *Txn) error { return tx.SessionDestroy(10, "a", t0) })
			if !fired(ws) {
				t.Fatal("invalidation did not wake readers of a held key")
			}
			ws.Release()
			for _, k := range []string{"k1", "k2"} {
				idx, e, _ := s.KVGet(nil, k)
				if tc.wantValue && (e == nil || e.Session != "" || e.ModifyIndex != 10) {
					t.Fatalf("%s after release: %+v", k, e)
				}
				if !tc.wantValue && (e != nil || idx != 10) {
					t.Fatalf("%s after delete: %+v at %d", k, e, idx)
				}
			}
			if _, sess, _ := s.SessionGet(nil, "a"); sess != nil {
				t.Fatal("session still there")
			}
			// Lock-delay: b cannot take k1 for 10 s after the invalidation.
			if lock(t, s, 11, "k1", "b", t0.Add(9*time.Second)) {
				t.Fatal("acquired inside the lock-delay")
			}
			if !lock(t, s, 12, "k1", "b", t0.Add(10*time.Second)) {
				t.Fatal("not acquired after the lock-delay")
			}
			// Destroying a missing session is a no-op.
			apply(t, s, func(tx *Txn) error { return tx.SessionDestroy(13, "a", t0) })
		})
	}
}

func TestSessionListByNode(t *testing.T) {
	s := newTestStore(t)
	for i, sess := range []Session{{ID: "1", Node: "a"}, {ID: "2", Node: "b"}, {ID: "3", Node: "a"}} {
		sess := sess
		apply(t, s, func(tx *Txn) error { return tx.SessionCreate(uint64(i+1), &sess) })
	}
	_, all, _ := s.SessionList(nil, "")
	_, onA, _ := s.SessionList(nil, "a")
	if len(all) != 3 || len(onA) != 2 {
		t.Fatalf("all %d, on a %d", len(all), len(onA))
	}
	apply(t, s, func(tx *Txn) error {
		if err := tx.SessionCreate(9, &Session{ID: "1"}); !errors.Is(err, ErrSessionExists) {
			t.Fatalf("duplicate session ID: %v", err)
		}
		return nil
	})
}

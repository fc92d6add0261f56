package state

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apply runs one write at index idx in its own transaction.
func apply(t testing.TB, s *Store, fn func(tx *Txn) error) {
	t.Helper()
	tx := s.WriteTxn()
	defer tx.Abort()
	if err := fn(tx); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
}

func put(t testing.TB, s *Store, idx uint64, key, val string) {
	t.Helper()
	apply(t, s, func(tx *Txn) error { return tx.KVSet(idx, &KVEntry{Key: key, Value: []byte(val)}) })
}

func TestKVSetGetKeepsCreateIndex(t *testing.T) {
	s := newTestStore(t)
	put(t, s, 3, "a", "1")
	put(t, s, 7, "a", "2")
	idx, e, err := s.KVGet(nil, "a")
	if err != nil {
		t.Fatal(err)
	}
	if idx != 7 || e.CreateIndex != 3 || e.ModifyIndex != 7 || string(e.Value) != "2" {
		t.Fatalf("got idx %d entry %+v", idx, e)
	}
}

func TestKVCAS(t *testing.T) {
	cases := []struct {
		name    string
		setup   []string // keys written at index 5
		cas     uint64
		wantOK  bool
		wantVal string
	}{
		{"create-only on missing key", nil, 0, true, "new"},
		{"create-only on existing key", []string{"k"}, 0, false, "old"},
		{"matching index", []string{"k"}, 5, true, "new"},
		{"stale index", []string{"k"}, 4, false, "old"},
		{"index on missing key", nil, 5, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			for _, k := range tc.setup {
				put(t, s, 5, k, "old")
			}
			var ok bool
			apply(t, s, func(tx *Txn) (err error) {
				ok, err = tx.KVSetCAS(9, tc.cas, &KVEntry{Key: "k", Value: []byte("new")})
				return err
			})
			if ok != tc.wantOK {
				t.Fatalf("cas ok = %v, want %v", ok, tc.wantOK)
			}
			_, e, _ := s.KVGet(nil, "k")
			got := ""
			if e != nil {
				got = string(e.Value)
			}
			if got != tc.wantVal {
				t.Fatalf("value %q, want %q", got, tc.wantVal)
			}
		})
	}
}

func TestKVDeleteCASAndTree(t *testing.T) {
	s := newTestStore(t)
	for i, k := range []string{"a/1", "a/2", "a/b/3", "ab", "b"} {
		put(t, s, uint64(10+i), k, "v")
	}
	var ok bool
	apply(t, s, func(tx *Txn) (err error) { ok, err = tx.KVDeleteCAS(20, 99, "b"); return })
	if ok {
		t.Fatal("delete-cas with wrong index succeeded")
	}
	apply(t, s, func(tx *Txn) (err error) { ok, err = tx.KVDeleteCAS(21, 14, "b"); return })
	if !ok {
		t.Fatal("delete-cas with right index failed")
	}
	apply(t, s, func(tx *Txn) error { return tx.KVDeleteTree(22, "a/") })
	_, all, _ := s.KVList(nil, "")
	if len(all) != 1 || all[0].Key != "ab" {
		t.Fatalf("after delete-tree: %+v", all)
	}
}

func TestKVIndexOfMissingKeyIsStable(t *testing.T) {
	s := newTestStore(t)
	idx, e, _ := s.KVGet(nil, "missing")
	if e != nil || idx != 1 {
		t.Fatalf("empty store: idx %d entry %v, want 1 and nil", idx, e)
	}
	put(t, s, 5, "other", "x")
	if idx, _, _ := s.KVGet(nil, "missing"); idx != 1 {
		t.Fatalf("unrelated write moved the index of a missing key to %d", idx)
	}
	put(t, s, 6, "missing", "x")
	apply(t, s, func(tx *Txn) error { return tx.KVDelete(8, "missing") })
	if idx, _, _ := s.KVGet(nil, "missing"); idx != 8 {
		t.Fatalf("deleted key reports %d, want its deletion index 8", idx)
	}
	if idx, _, _ := s.KVList(nil, "mis"); idx != 8 {
		t.Fatalf("prefix that lost a key reports %d, want 8", idx)
	}
	apply(t, s, func(tx *Txn) error { return tx.ReapTombstones(9, 8) })
	if idx, _, _ := s.KVGet(nil, "missing"); idx != 8 {
		t.Fatalf("after reaping, missing key reports %d; must not go below 8", idx)
	}
}

func TestKVKeysSeparator(t *testing.T) {
	s := newTestStore(t)
	for i, k := range []string{"web/a", "web/b/c", "web/b/d", "web/e/", "webx"} {
		put(t, s, uint64(i+1), k, "")
	}
	cases := []struct {
		prefix, sep string
		want        []string
	}{
		{"web/", "/", []string{"web/a", "web/b/", "web/e/"}},
		{"web/", "", []string{"web/a", "web/b/c", "web/b/d", "web/e/"}},
		{"", "/", []string{"web/", "webx"}},
		{"nothing", "/", nil},
	}
	for _, tc := range cases {
		_, keys, err := s.KVKeys(nil, tc.prefix, tc.sep)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(keys, tc.want) {
			t.Errorf("keys(%q, %q) = %q, want %q", tc.prefix, tc.sep, keys, tc.want)
		}
	}
}

func fired(ws *WatchSet) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	return ws.Wait(ctx) == nil
}

func TestKVWatchesAreFineGrained(t *testing.T) {
	cases := []struct {
		name     string
		read     func(s *Store, ws *WatchSet)
		write    string
		wantFire bool
	}{
		{"missing key, unrelated write", func(s *Store, ws *WatchSet) { s.KVGet(ws, "a/missing") }, "b/x", false},
		{"missing key, sibling write", func(s *Store, ws *WatchSet) { s.KVGet(ws, "a/missing") }, "a/other", false},
		{"missing key created", func(s *Store, ws *WatchSet) { s.KVGet(ws, "a/missing") }, "a/missing", true},
		{"existing key written", func(s *Store, ws *WatchSet) { s.KVGet(ws, "a/1") }, "a/1", true},
		{"prefix, write under it", func(s *Store, ws *WatchSet) { s.KVList(ws, "a/") }, "a/new", true},
		{"prefix, write beside it", func(s *Store, ws *WatchSet) { s.KVList(ws, "a/") }, "ab", false},
		{"keys, write under it", func(s *Store, ws *WatchSet) { s.KVKeys(ws, "a/", "/") }, "a/z/z", true},
		{"empty prefix, any write", func(s *Store, ws *WatchSet) { s.KVList(ws, "") }, "zzz", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			put(t, s, 1, "a/1", "v")
			ws := NewWatchSet()
			ws.Add(s.AbandonCh())
			tc.read(s, ws)
			put(t, s, 2, tc.write, "v")
			if got := fired(ws); got != tc.wantFire {
				t.Fatalf("fired = %v, want %v", got, tc.wantFire)
			}
			ws.Release()
			s.kvw.mu.Lock()
			left := len(s.kvw.exact) + len(s.kvw.prefix) + len(s.kvw.lens)
			s.kvw.mu.Unlock()
			if left != 0 {
				t.Fatalf("%d watch registrations left after release", left)
			}
		})
	}
}

func TestKVDeleteWakesKeyReaders(t *testing.T) {
	s := newTestStore(t)
	put(t, s, 1, "k", "v")
	ws := NewWatchSet()
	s.KVGet(ws, "k")
	apply(t, s, func(tx *Txn) error { return tx.KVDelete(2, "k") })
	if !fired(ws) {
		t.Fatal("delete did not wake the reader")
	}
	ws.Release()
}

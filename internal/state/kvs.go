package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// KVEntry is one key in the KV tree. Entries stored in memdb are never mutated: a write
// inserts a fresh copy, because concurrent readers may hold the old one.
type KVEntry struct {
	Key         string
	Flags       uint64
	Value       []byte
	Session     string
	LockIndex   uint64
	CreateIndex uint64
	ModifyIndex uint64
}

// Clone returns a copy that shares Value (values are never mutated in place).
func (e *KVEntry) Clone() *KVEntry {
	c := *e
	return &c
}

// tombstone remembers the index at which a key was deleted, so that a blocking read of
// a deleted key or of a prefix that lost keys reports an index that moved forward.
type tombstone struct {
	Key   string
	Index uint64
}

// floorTable is the pseudo-table whose index is the highest tombstone index reaped so
// far; reads of missing keys report at least this, so their index never goes backwards
// when tombstones are collected.
const floorTable = "tombstone-floor"

var errEmptyKey = errors.New("state: empty key")

// KVSet writes an entry unconditionally. LockIndex and Session of an existing entry are
// kept: a plain write does not take or drop a lock (Consul semantics).
func (t *Txn) KVSet(idx uint64, e *KVEntry) error {
	if e.Key == "" {
		return errEmptyKey
	}
	existing, err := t.kvGet(e.Key)
	if err != nil {
		return err
	}
	n := e.Clone()
	n.ModifyIndex = idx
	if existing != nil {
		n.CreateIndex = existing.CreateIndex
		n.LockIndex = existing.LockIndex
		n.Session = existing.Session
	} else {
		n.CreateIndex = idx
		n.LockIndex = 0
		n.Session = ""
	}
	return t.kvInsert(idx, n)
}

// KVSetCAS writes the entry only if the key's ModifyIndex equals cas; cas 0 means "only
// if the key does not exist". It reports whether the write happened.
func (t *Txn) KVSetCAS(idx, cas uint64, e *KVEntry) (bool, error) {
	existing, err := t.kvGet(e.Key)
	if err != nil {
		return false, err
	}
	if cas == 0 && existing != nil {
		return false, nil
	}
	if cas != 0 && (existing == nil || existing.ModifyIndex != cas) {
		return false, nil
	}
	return true, t.KVSet(idx, e)
}

// KVDelete removes a key; deleting a missing key succeeds and changes nothing.
func (t *Txn) KVDelete(idx uint64, key string) error {
	existing, err := t.kvGet(key)
	if err != nil || existing == nil {
		return err
	}
	return t.kvRemove(idx, existing)
}

// KVDeleteCAS removes a key only if its ModifyIndex equals cas.
func (t *Txn) KVDeleteCAS(idx, cas uint64, key string) (bool, error) {
	existing, err := t.kvGet(key)
	if err != nil {
		return false, err
	}
	if existing == nil || existing.ModifyIndex != cas {
		return false, nil
	}
	return true, t.kvRemove(idx, existing)
}

// KVDeleteTree removes every key that starts with prefix ("" is the whole tree).
func (t *Txn) KVDeleteTree(idx uint64, prefix string) error {
	it, err := t.tx.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		return fmt.Errorf("state: list %q: %w", prefix, err)
	}
	var victims []*KVEntry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		victims = append(victims, raw.(*KVEntry))
	}
	for _, e := range victims {
		if err := t.kvRemove(idx, e); err != nil {
			return err
		}
	}
	return nil
}

// ReapTombstones forgets deletions at or below upTo; reads of missing keys then report
// at least upTo, so their index still never goes backwards.
func (t *Txn) ReapTombstones(idx, upTo uint64) error {
	it, err := t.tx.Get(tableTombstones, "id")
	if err != nil {
		return fmt.Errorf("state: list tombstones: %w", err)
	}
	var victims []*tombstone
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if ts := raw.(*tombstone); ts.Index <= upTo {
			victims = append(victims, ts)
		}
	}
	for _, ts := range victims {
		if err := t.tx.Delete(tableTombstones, ts); err != nil {
			return fmt.Errorf("state: reap tombstone %q: %w", ts.Key, err)
		}
	}
	t.bump(floorTable, upTo)
	t.bump(tableTombstones, idx)
	return nil
}

func (t *Txn) kvGet(key string) (*KVEntry, error) {
	raw, err := t.tx.First(tableKVs, "id", key)
	if err != nil {
		return nil, fmt.Errorf("state: read %q: %w", key, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*KVEntry), nil
}

func (t *Txn) kvInsert(idx uint64, e *KVEntry) error {
	t.keys = append(t.keys, e.Key)
	if err := t.tx.Insert(tableKVs, e); err != nil {
		return fmt.Errorf("state: write %q: %w", e.Key, err)
	}
	// A key that comes back must not keep reporting its old deletion.
	ts, err := t.tx.First(tableTombstones, "id", e.Key)
	if err != nil {
		return fmt.Errorf("state: read tombstone %q: %w", e.Key, err)
	}
	if ts != nil {
		if err := t.tx.Delete(tableTombstones, ts); err != nil {
			return fmt.Errorf("state: clear tombstone %q: %w", e.Key, err)
		}
	}
	t.bump(tableKVs, idx)
	return nil
}

func (t *Txn) kvRemove(idx uint64, e *KVEntry) error {
	t.keys = append(t.keys, e.Key)
	if err := t.tx.Delete(tableKVs, e); err != nil {
		return fmt.Errorf("state: delete %q: %w", e.Key, err)
	}
	if err := t.tx.Insert(tableTombstones, &tombstone{Key: e.Key, Index: idx}); err != nil {
		return fmt.Errorf("state: tombstone %q: %w", e.Key, err)
	}
	t.bump(tableKVs, idx)
	t.bump(tableTombstones, idx)
	return nil
}

// KVGet returns one entry (nil when absent) and the index a blocking read of it should
// report: the entry's ModifyIndex, or for a missing key the index of its deletion (or of
// the tombstone floor), at least 1. Unrelated writes do not move this index, which is
// what lets a blocking read of a missing key sleep until that key appears.
func (s *Store) KVGet(ws *WatchSet, key string) (uint64, *KVEntry, error) {
	// Register before reading, so a write between the read and the wait is not missed.
	s.kvw.watchKey(ws, key)
	tx := s.readTxn()
	defer tx.Abort()
	raw, err := tx.First(tableKVs, "id", key)
	if err != nil {
		return 0, nil, fmt.Errorf("state: read %q: %w", key, err)
	}
	if raw != nil {
		e := raw.(*KVEntry)
		return e.ModifyIndex, e, nil
	}
	idx := tableIndexTxn(tx, floorTable)
	if ts, err := tx.First(tableTombstones, "id", key); err == nil && ts != nil {
		idx = max(idx, ts.(*tombstone).Index)
	}
	return max(idx, 1), nil, nil
}

// KVList returns every entry under prefix in key order, and the highest index among
// them and the deletions under the prefix (at least 1).
func (s *Store) KVList(ws *WatchSet, prefix string) (uint64, []*KVEntry, error) {
	s.kvw.watchPrefix(ws, prefix)
	tx := s.readTxn()
	defer tx.Abort()
	it, err := tx.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		return 0, nil, fmt.Errorf("state: list %q: %w", prefix, err)
	}
	var out []*KVEntry
	var idx uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*KVEntry)
		out = append(out, e)
		idx = max(idx, e.ModifyIndex)
	}
	return max(idx, prefixDeletionIndex(tx, prefix), 1), out, nil
}

// KVKeys lists the keys under prefix; with a separator, keys that continue past the next
// separator are folded into one "dir/" entry (Consul's ?keys&separator=).
func (s *Store) KVKeys(ws *WatchSet, prefix, sep string) (uint64, []string, error) {
	s.kvw.watchPrefix(ws, prefix)
	tx := s.readTxn()
	defer tx.Abort()
	it, err := tx.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		return 0, nil, fmt.Errorf("state: list %q: %w", prefix, err)
	}
	var keys []string
	var idx uint64
	prev := ""
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*KVEntry)
		idx = max(idx, e.ModifyIndex)
		k := e.Key
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				k = k[:len(prefix)+i+len(sep)]
			}
		}
		// Keys come sorted, so folded duplicates are adjacent.
		if k == prev && len(keys) > 0 {
			continue
		}
		keys = append(keys, k)
		prev = k
	}
	return max(idx, prefixDeletionIndex(tx, prefix), 1), keys, nil
}

// prefixDeletionIndex is the highest index of a deletion under prefix still remembered,
// or the tombstone floor.
func prefixDeletionIndex(tx *memdb.Txn, prefix string) uint64 {
	idx := tableIndexTxn(tx, floorTable)
	it, err := tx.Get(tableTombstones, "id_prefix", prefix)
	if err != nil {
		return idx
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		idx = max(idx, raw.(*tombstone).Index)
	}
	return idx
}

// KVIndex returns the highest index that changed the KV table.
func (s *Store) KVIndex() uint64 {
	tx := s.readTxn()
	defer tx.Abort()
	return tableIndexTxn(tx, tableKVs)
}

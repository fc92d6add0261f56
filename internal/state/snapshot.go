package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Snapshot is a consistent, point-in-time view of the whole store. Taking one is cheap
// (memdb is MVCC) and writes go on while it is read.
type Snapshot struct {
	tx *memdb.Txn
}

// Snapshot captures the current state; call Close when done.
func (s *Store) Snapshot() *Snapshot { return &Snapshot{tx: s.readTxn()} }

// Close releases the snapshot.
func (sn *Snapshot) Close() { sn.tx.Abort() }

// KVs calls fn for every KV entry in key order.
func (sn *Snapshot) KVs(fn func(*KVEntry) error) error {
	return each(sn.tx, tableKVs, func(raw any) error { return fn(raw.(*KVEntry)) })
}

// Sessions calls fn for every session.
func (sn *Snapshot) Sessions(fn func(*Session) error) error {
	return each(sn.tx, tableSessions, func(raw any) error { return fn(raw.(*Session)) })
}

// Nodes, Services and Checks call fn for every catalog object.
func (sn *Snapshot) Nodes(fn func(*Node) error) error {
	return each(sn.tx, tableNodes, func(raw any) error { return fn(raw.(*Node)) })
}

// Services calls fn for every service instance.
func (sn *Snapshot) Services(fn func(*Service) error) error {
	return each(sn.tx, tableServices, func(raw any) error { return fn(raw.(*Service)) })
}

// Checks calls fn for every health check.
func (sn *Snapshot) Checks(fn func(*Check) error) error {
	return each(sn.tx, tableChecks, func(raw any) error { return fn(raw.(*Check)) })
}

// Tombstone is a remembered deletion, as it travels in snapshots.
type Tombstone struct {
	Key   string
	Index uint64
}

// Tombstones calls fn for every remembered deletion.
func (sn *Snapshot) Tombstones(fn func(Tombstone) error) error {
	return each(sn.tx, tableTombstones, func(raw any) error {
		ts := raw.(*tombstone)
		return fn(Tombstone{Key: ts.Key, Index: ts.Index})
	})
}

// TableIndex is a table's highest index, as it travels in snapshots.
type TableIndex struct {
	Table string
	Index uint64
}

// Indexes calls fn for every table index.
func (sn *Snapshot) Indexes(fn func(TableIndex) error) error {
	return each(sn.tx, tableIndex, func(raw any) error {
		ie := raw.(*indexEntry)
		return fn(TableIndex{Table: ie.Table, Index: ie.Value})
	})
}

func each(tx *memdb.Txn, table string, fn func(any) error) error {
	it, err := tx.Get(table, "id")
	if err != nil {
		return fmt.Errorf("state: iterate %s: %w", table, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := fn(raw); err != nil {
			return err
		}
	}
	return nil
}

// Restore builds a complete replacement state, then swaps it in at once with Commit.
// Until Commit, readers keep seeing the old state; after it, their blocking queries wake
// (AbandonCh closes) and re-run against the new one.
type Restore struct {
	s   *Store
	gen *generation
	tx  *memdb.Txn
}

// NewRestore starts building a replacement state.
func (s *Store) NewRestore() (*Restore, error) {
	g, err := newGeneration()
	if err != nil {
		return nil, err
	}
	return &Restore{s: s, gen: g, tx: g.db.Txn(true)}, nil
}

// KV adds an entry as it is, indexes included.
func (r *Restore) KV(e *KVEntry) error {
	if err := r.tx.Insert(tableKVs, e.Clone()); err != nil {
		return fmt.Errorf("state: restore %q: %w", e.Key, err)
	}
	return bumpIndex(r.tx, tableKVs, e.ModifyIndex)
}

// Session adds a session as it is.
func (r *Restore) Session(sess *Session) error {
	c := *sess
	if err := r.tx.Insert(tableSessions, &c); err != nil {
		return fmt.Errorf("state: restore session %q: %w", sess.ID, err)
	}
	return nil
}

// Node, Service and Check add catalog objects as they are.
func (r *Restore) Node(n *Node) error { c := *n; return r.insert(tableNodes, &c) }

// Service adds a service instance.
func (r *Restore) Service(s *Service) error { c := *s; return r.insert(tableServices, &c) }

// Check adds a health check.
func (r *Restore) Check(ch *Check) error { c := *ch; return r.insert(tableChecks, &c) }

func (r *Restore) insert(table string, obj any) error {
	if err := r.tx.Insert(table, obj); err != nil {
		return fmt.Errorf("state: restore %s: %w", table, err)
	}
	return nil
}

// Tombstone adds a remembered deletion.
func (r *Restore) Tombstone(ts Tombstone) error {
	if err := r.tx.Insert(tableTombstones, &tombstone{Key: ts.Key, Index: ts.Index}); err != nil {
		return fmt.Errorf("state: restore tombstone %q: %w", ts.Key, err)
	}
	return nil
}

// Index sets a table's index.
func (r *Restore) Index(ti TableIndex) error { return bumpIndex(r.tx, ti.Table, ti.Index) }

// Commit swaps the rebuilt state in and wakes every blocking query on the old one.
func (r *Restore) Commit() {
	r.tx.Commit()
	old := r.s.cur.Swap(r.gen)
	r.s.commits.Add(1)
	close(old.abandonCh)
	r.s.kvw.notifyAll()
}

// Abort drops the rebuilt state; the store is unchanged.
func (r *Restore) Abort() { r.tx.Abort() }

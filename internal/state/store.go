package state

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
)

// Store holds the replicated state. Reads are safe from any goroutine; writes come only
// from the Raft FSM (one goroutine), through WriteTxn or a Restore.
type Store struct {
	cur       atomic.Pointer[generation]
	kvw       *kvWatch
	lockDelay *lockDelay
	// commits counts write transactions made visible (and restores), counted after
	// each became visible: a reader that sees the same count before and after it looked
	// at something saw no write change it since.
	commits atomic.Uint64
}

// Commits returns the number of write transactions (and snapshot restores) made
// visible so far. An answer computed after Commits returned c is still current while
// Commits returns c: caches check it instead of opening a read transaction.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// generation is one memdb and the channel that closes when a snapshot restore replaces
// it, so that blocking queries against the old data re-run against the new.
type generation struct {
	db        *memdb.MemDB
	abandonCh chan struct{}
}

// New returns an empty store.
func New() (*Store, error) {
	g, err := newGeneration()
	if err != nil {
		return nil, err
	}
	s := &Store{kvw: newKVWatch(), lockDelay: newLockDelay()}
	s.cur.Store(g)
	return s, nil
}

func newGeneration() (*generation, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: create memdb: %w", err)
	}
	return &generation{db: db, abandonCh: make(chan struct{})}, nil
}

// AbandonCh closes when the store's contents are replaced wholesale by a restore.
func (s *Store) AbandonCh() <-chan struct{} { return s.cur.Load().abandonCh }

func (s *Store) readTxn() *memdb.Txn { return s.cur.Load().db.Txn(false) }

// Txn is a write transaction. One Txn may apply several Raft entries (the FSM batches
// them); each operation names the index of the entry it belongs to.
type Txn struct {
	tx   *memdb.Txn
	s    *Store
	keys []string // KV keys written, to wake their readers on commit
	// indexes holds each touched table's new index; written once at commit rather than
	// on every operation, which halves the radix-tree writes of a batch.
	indexes map[string]uint64
}

// bump records that table changed at idx.
func (t *Txn) bump(table string, idx uint64) {
	if t.indexes == nil {
		t.indexes = make(map[string]uint64, 2)
	}
	if idx > t.indexes[table] {
		t.indexes[table] = idx
	}
}

// WriteTxn starts a write transaction. Only one may be open at a time (memdb serialises
// writers); the FSM is the only caller outside tests.
func (s *Store) WriteTxn() *Txn { return &Txn{tx: s.cur.Load().db.Txn(true), s: s} }

// Commit makes the transaction's writes visible and wakes the readers they concern.
func (t *Txn) Commit() {
	for table, idx := range t.indexes {
		if err := bumpIndex(t.tx, table, idx); err != nil {
			// Only a schema bug fails here; losing the index would break blocking
			// queries silently, so stop loudly instead.
			panic(err)
		}
	}
	t.indexes = nil
	t.tx.Commit()
	t.s.commits.Add(1)
	if len(t.keys) > 0 {
		t.s.kvw.notify(t.keys)
		t.keys = nil
	}
}

// Abort drops the transaction's writes; after Commit it does nothing.
func (t *Txn) Abort() { t.tx.Abort() }

// Index returns the highest Raft index applied to the store, 0 when empty.
func (s *Store) Index() uint64 {
	tx := s.readTxn()
	defer tx.Abort()
	var max uint64
	it, err := tx.Get(tableIndex, "id")
	if err != nil {
		return 0
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*indexEntry).Value; v > max {
			max = v
		}
	}
	return max
}

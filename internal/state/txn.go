package state

import (
	"fmt"
	"time"
)

// TxnVerb is a KV verb of a transaction (Consul's names).
type TxnVerb string

// The transaction verbs. Reads and checks fail the transaction when their condition
// does not hold; every verb sees the writes of the operations before it.
const (
	TxnSet            TxnVerb = "set"
	TxnCAS            TxnVerb = "cas"
	TxnLock           TxnVerb = "lock"
	TxnUnlock         TxnVerb = "unlock"
	TxnGet            TxnVerb = "get"
	TxnGetOrEmpty     TxnVerb = "get-or-empty"
	TxnGetTree        TxnVerb = "get-tree"
	TxnCheckIndex     TxnVerb = "check-index"
	TxnCheckSession   TxnVerb = "check-session"
	TxnCheckNotExists TxnVerb = "check-not-exists"
	TxnDelete         TxnVerb = "delete"
	TxnDeleteTree     TxnVerb = "delete-tree"
	TxnDeleteCAS      TxnVerb = "delete-cas"
)

// ReadOnly reports whether a verb never writes.
func (v TxnVerb) ReadOnly() bool {
	switch v {
	case TxnGet, TxnGetOrEmpty, TxnGetTree, TxnCheckIndex, TxnCheckSession, TxnCheckNotExists:
		return true
	}
	return false
}

// Known reports whether v is a verb this version understands.
func (v TxnVerb) Known() bool {
	switch v {
	case TxnSet, TxnCAS, TxnLock, TxnUnlock, TxnDelete, TxnDeleteTree, TxnDeleteCAS:
		return true
	}
	return v.ReadOnly()
}

// TxnOp is one operation: Entry.Key (a prefix for the tree verbs), Entry.Value and
// Flags for writes, Entry.ModifyIndex as the index for cas/delete-cas/check-index,
// Entry.Session for lock/unlock/check-session.
type TxnOp struct {
	Verb  TxnVerb
	Entry KVEntry
}

// TxnResult is an entry a successful operation returns (writes return theirs
// without the value, as Consul does).
type TxnResult struct {
	Entry *KVEntry
}

// TxnError says which operation failed and why.
type TxnError struct {
	OpIndex int
	What    string
}

// KVTxn applies ops in order; if one fails, it returns the errors and the caller must
// abort the transaction so that nothing is applied. now is the leader's proposal time
// (for lock-delay).
func (t *Txn) KVTxn(idx uint64, ops []TxnOp, now time.Time) ([]TxnResult, []TxnError, error) {
	var results []TxnResult
	fail := func(i int, format string, args ...any) ([]TxnResult, []TxnError, error) {
		return nil, []TxnError{{OpIndex: i, What: fmt.Sprintf(format, args...)}}, nil
	}
	for i, op := range ops {
		e := op.Entry
		existing, err := t.kvGet(e.Key)
		if err != nil {
			return nil, nil, err
		}
		switch op.Verb {
		case TxnGet, TxnGetOrEmpty:
			if existing == nil {
				if op.Verb == TxnGet {
					return fail(i, "key %q doesn't exist", e.Key)
				}
				continue
			}
			results = append(results, TxnResult{Entry: existing})
		case TxnGetTree:
			it, err := t.tx.Get(tableKVs, "id_prefix", e.Key)
			if err != nil {
				return nil, nil, fmt.Errorf("state: list %q: %w", e.Key, err)
			}
			for raw := it.Next(); raw != nil; raw = it.Next() {
				results = append(results, TxnResult{Entry: raw.(*KVEntry)})
			}
		case TxnCheckIndex:
			if existing == nil || existing.ModifyIndex != e.ModifyIndex {
				return fail(i, "current modify index for %q does not match %d", e.Key, e.ModifyIndex)
			}
			results = append(results, TxnResult{Entry: withoutValue(existing)})
		case TxnCheckSession:
			if existing == nil || existing.Session != e.Session {
				return fail(i, "key %q is not locked by session %q", e.Key, e.Session)
			}
			results = append(results, TxnResult{Entry: withoutValue(existing)})
		case TxnCheckNotExists:
			if existing != nil {
				return fail(i, "key %q exists", e.Key)
			}
		case TxnSet:
			if err := t.KVSet(idx, &e); err != nil {
				return nil, nil, err
			}
			results = append(results, t.written(e.Key))
		case TxnCAS:
			ok, err := t.KVSetCAS(idx, e.ModifyIndex, &e)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				return fail(i, "failed to set key %q, index is stale", e.Key)
			}
			results = append(results, t.written(e.Key))
		case TxnLock:
			ok, err := t.KVLock(idx, &e, now)
			if err != nil {
				return fail(i, "failed to lock key %q: %v", e.Key, err)
			}
			if !ok {
				return fail(i, "failed to lock key %q, lock is already held", e.Key)
			}
			results = append(results, t.written(e.Key))
		case TxnUnlock:
			ok, err := t.KVUnlock(idx, &e)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				return fail(i, "failed to unlock key %q, lock isn't held, or is held by another session", e.Key)
			}
			results = append(results, t.written(e.Key))
		case TxnDelete:
			if err := t.KVDelete(idx, e.Key); err != nil {
				return nil, nil, err
			}
		case TxnDeleteTree:
			if err := t.KVDeleteTree(idx, e.Key); err != nil {
				return nil, nil, err
			}
		case TxnDeleteCAS:
			ok, err := t.KVDeleteCAS(idx, e.ModifyIndex, e.Key)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				return fail(i, "failed to delete key %q, index is stale", e.Key)
			}
		default:
			return fail(i, "unknown KV verb %q", op.Verb)
		}
	}
	return results, nil, nil
}

func withoutValue(e *KVEntry) *KVEntry {
	c := e.Clone()
	c.Value = nil
	return c
}

func (t *Txn) written(key string) TxnResult {
	e, _ := t.kvGet(key)
	if e == nil {
		return TxnResult{}
	}
	return TxnResult{Entry: withoutValue(e)}
}

// KVTxnRead runs a transaction of read verbs only against a consistent view, without
// Raft; it returns the index of the KV table with the results.
func (s *Store) KVTxnRead(ops []TxnOp) (uint64, []TxnResult, []TxnError, error) {
	for i, op := range ops {
		if !op.Verb.ReadOnly() {
			return 0, nil, []TxnError{{OpIndex: i, What: fmt.Sprintf("verb %q writes", op.Verb)}}, nil
		}
	}
	t := &Txn{tx: s.readTxn(), s: s}
	defer t.tx.Abort()
	res, errs, err := t.KVTxn(0, ops, time.Time{})
	return max(tableIndexTxn(t.tx, tableKVs), 1), res, errs, err
}

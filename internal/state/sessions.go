package state

import (
	"errors"
	"fmt"
	"time"
)

// Session behaviours: what happens to the keys a session holds when it is invalidated.
const (
	BehaviorRelease = "release"
	BehaviorDelete  = "delete"
)

// Session is a Consul session: a lease that locks keys and dies with its owner.
type Session struct {
	ID            string
	Name          string
	Node          string
	NodeChecks    []string
	ServiceChecks []string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	CreateIndex   uint64
	ModifyIndex   uint64
}

// Errors of session and lock operations; the API maps them to client errors.
var (
	ErrSessionNotFound = errors.New("invalid session")
	ErrSessionExists   = errors.New("session ID already in use")
)

// SessionCreate stores a new session.
func (t *Txn) SessionCreate(idx uint64, sess *Session) error {
	existing, err := t.tx.First(tableSessions, "id", sess.ID)
	if err != nil {
		return fmt.Errorf("state: read session: %w", err)
	}
	if existing != nil {
		return ErrSessionExists
	}
	n := *sess
	n.CreateIndex, n.ModifyIndex = idx, idx
	if err := t.tx.Insert(tableSessions, &n); err != nil {
		return fmt.Errorf("state: write session: %w", err)
	}
	t.bump(tableSessions, idx)
	return nil
}

// SessionDestroy invalidates a session: the keys it holds are released (their lock
// dropped, values kept) or deleted, per its Behavior, all in this transaction, and each
// of them may not be locked again before now + LockDelay. Destroying a missing session
// is a no-op (it may have expired concurrently).
func (t *Txn) SessionDestroy(idx uint64, id string, now time.Time) error {
	raw, err := t.tx.First(tableSessions, "id", id)
	if err != nil {
		return fmt.Errorf("state: read session: %w", err)
	}
	if raw == nil {
		return nil
	}
	sess := raw.(*Session)
	it, err := t.tx.Get(tableKVs, "session", id)
	if err != nil {
		return fmt.Errorf("state: keys of session: %w", err)
	}
	var held []*KVEntry
	for r := it.Next(); r != nil; r = it.Next() {
		held = append(held, r.(*KVEntry))
	}
	for _, e := range held {
		if sess.LockDelay > 0 {
			t.s.lockDelay.set(e.Key, now.Add(sess.LockDelay))
		}
		if sess.Behavior == BehaviorDelete {
			if err := t.kvRemove(idx, e); err != nil {
				return err
			}
			continue
		}
		n := e.Clone()
		n.Session = ""
		n.ModifyIndex = idx
		if err := t.kvInsert(idx, n); err != nil {
			return err
		}
	}
	if err := t.tx.Delete(tableSessions, sess); err != nil {
		return fmt.Errorf("state: delete session: %w", err)
	}
	t.bump(tableSessions, idx)
	return nil
}

// KVLock takes the lock on a key for a session and writes the value; it reports
// false when another session holds it or the key is in its lock-delay window at now.
// Re-acquiring a lock the session already holds updates the value without counting a
// new acquisition (Consul semantics).
func (t *Txn) KVLock(idx uint64, e *KVEntry, now time.Time) (bool, error) {
	raw, err := t.tx.First(tableSessions, "id", e.Session)
	if err != nil {
		return false, fmt.Errorf("state: read session: %w", err)
	}
	if raw == nil {
		return false, ErrSessionNotFound
	}
	existing, err := t.kvGet(e.Key)
	if err != nil {
		return false, err
	}
	n := e.Clone()
	n.ModifyIndex = idx
	switch {
	case existing == nil:
		if t.s.lockDelay.blocked(e.Key, now) {
			return false, nil
		}
		n.CreateIndex, n.LockIndex = idx, 1
	case existing.Session == e.Session:
		n.CreateIndex, n.LockIndex = existing.CreateIndex, existing.LockIndex
	case existing.Session != "":
		return false, nil
	default:
		if t.s.lockDelay.blocked(e.Key, now) {
			return false, nil
		}
		n.CreateIndex, n.LockIndex = existing.CreateIndex, existing.LockIndex+1
	}
	return true, t.kvInsert(idx, n)
}

// KVUnlock drops a session's lock on a key and writes the value; it reports false
// when the key is not locked by that session.
func (t *Txn) KVUnlock(idx uint64, e *KVEntry) (bool, error) {
	existing, err := t.kvGet(e.Key)
	if err != nil {
		return false, err
	}
	if existing == nil || existing.Session == "" || existing.Session != e.Session {
		return false, nil
	}
	n := e.Clone()
	n.Session = ""
	n.ModifyIndex, n.CreateIndex, n.LockIndex = idx, existing.CreateIndex, existing.LockIndex
	return true, t.kvInsert(idx, n)
}

// SessionGet returns one session (nil when absent) and the sessions table's index.
func (s *Store) SessionGet(ws *WatchSet, id string) (uint64, *Session, error) {
	tx := s.readTxn()
	defer tx.Abort()
	ch, raw, err := tx.FirstWatch(tableSessions, "id", id)
	if err != nil {
		return 0, nil, fmt.Errorf("state: read session: %w", err)
	}
	ws.Add(ch)
	idx := max(tableIndexTxn(tx, tableSessions), 1)
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*Session), nil
}

// SessionList returns every session (node "" ) or those of one node.
func (s *Store) SessionList(ws *WatchSet, node string) (uint64, []*Session, error) {
	tx := s.readTxn()
	defer tx.Abort()
	index, args := "id", []any{}
	if node != "" {
		index, args = "node", []any{node}
	}
	it, err := tx.Get(tableSessions, index, args...)
	if err != nil {
		return 0, nil, fmt.Errorf("state: list sessions: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Session
	for r := it.Next(); r != nil; r = it.Next() {
		out = append(out, r.(*Session))
	}
	return max(tableIndexTxn(tx, tableSessions), 1), out, nil
}

// KVLockDelay returns when the lock-delay of key ends (zero if none).
func (s *Store) KVLockDelay(key string) time.Time { return s.lockDelay.get(key) }

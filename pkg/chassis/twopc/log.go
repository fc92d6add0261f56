package twopc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// State is a transaction's state in the decision log.
type State string

// The states of a transaction in the log. A record starts as Preparing, is decided
// once (Commit or Abort, by a CAS from Preparing) and ends Done when every participant
// has acknowledged the decision. Done keeps the decision in Record.Decision.
const (
	Preparing State = "preparing"
	Commit    State = "commit"
	Abort     State = "abort"
	Done      State = "done"
)

// LeaderKey is the key, under the log's prefix, of the lock whose holder runs the
// coordinator's recovery; it is therefore not a valid transaction ID.
const LeaderKey = "leader"

// DefaultPrefix is the KV prefix of the decision log.
const DefaultPrefix = "twopc/"

// Errors of the log.
var (
	// ErrTransition: the log does not allow the change (a decision for a transaction
	// already decided, done before a decision, ...).
	ErrTransition = errors.New("twopc: transition not allowed")
	// ErrExists: Run was given the ID of a transaction that is already in the log.
	ErrExists = errors.New("twopc: transaction already in the log")
	// ErrBadTxID: a transaction ID that cannot be a single KV key segment.
	ErrBadTxID = errors.New("twopc: bad transaction ID")
)

// Member is a participant as the log records it: its name, the base URL of its
// endpoints, and the SHA-256 of the payload it was asked to prepare (a participant
// prepares only the payload the coordinator logged).
type Member struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Digest string `json:"payload_sha256"`
}

// Record is one transaction in the decision log, stored as JSON at <prefix><txid>.
type Record struct {
	TxID         string    `json:"txid"`
	State        State     `json:"state"`
	Decision     State     `json:"decision,omitempty"` // Commit or Abort once decided; kept when Done
	Reason       string    `json:"reason,omitempty"`   // why it aborted
	Participants []Member  `json:"participants"`
	Coordinator  string    `json:"coordinator,omitempty"` // who began it, for people reading the log
	Created      time.Time `json:"created"`
	Deadline     time.Time `json:"deadline"` // still Preparing after this: presumed aborted
	Decided      time.Time `json:"decided,omitzero"`
}

// Next returns the record after a change to state to at time now, or ErrTransition.
// The allowed changes are Preparing → Commit or Abort (reason says why it aborts),
// and Commit or Abort → Done.
func (r Record) Next(to State, reason string, now time.Time) (Record, error) {
	switch {
	case r.State == Preparing && (to == Commit || to == Abort):
		r.State, r.Decision, r.Decided = to, to, now
		if to == Abort {
			r.Reason = reason
		}
		return r, nil
	case (r.State == Commit || r.State == Abort) && to == Done:
		r.State = Done
		return r, nil
	}
	return r, fmt.Errorf("%w: %s from %s", ErrTransition, to, r.State)
}

// Outcome is what a participant must do according to the record at time now: Commit,
// Abort, or Preparing (nothing yet: no decision, and the deadline has not passed).
// A Preparing record past its deadline says Abort: presumed abort.
func (r Record) Outcome(now time.Time) State {
	switch r.State {
	case Commit, Abort:
		return r.State
	case Done:
		return r.Decision
	}
	if now.After(r.Deadline) {
		return Abort
	}
	return Preparing
}

// member returns the participant named name, or false.
func (r Record) member(name string) (Member, bool) {
	for _, m := range r.Participants {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// validTxID reports whether id can be a transaction ID: a single KV key segment of
// letters, digits, '-', '_' and '.', at most 128 bytes, and not the leader key.
func validTxID(id string) error {
	if id == LeaderKey || !chassis.ValidKeySegment(id, 128) {
		return fmt.Errorf("%w %q", ErrBadTxID, id)
	}
	return nil
}

// kvLog is the decision log in the KV store: one key per transaction, every change a
// CAS on the key's ModifyIndex, so two writers can never both decide.
type kvLog struct {
	consul *api.Client
	prefix string
}

func newLog(c *api.Client, prefix string) *kvLog {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &kvLog{consul: c, prefix: prefix}
}

func (l *kvLog) key(txid string) string { return l.prefix + txid }

// entry is a record with the ModifyIndex it was read (or written) at.
type entry struct {
	Record
	index uint64
}

// create writes a new Preparing record; ErrExists if the ID is taken.
func (l *kvLog) create(ctx context.Context, r Record) (entry, error) {
	idx, ok, err := l.cas(ctx, r, 0)
	if err != nil {
		return entry{}, err
	}
	if !ok {
		return entry{}, fmt.Errorf("%w: %s", ErrExists, r.TxID)
	}
	return entry{r, idx}, nil
}

// cas writes r if its key is still at index (0: absent); it returns the new index.
func (l *kvLog) cas(ctx context.Context, r Record, index uint64) (uint64, bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, false, err
	}
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.key(r.TxID), Value: b, Index: index}}}
	ok, resp, _, err := l.consul.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, false, fmt.Errorf("twopc: writing the log of %s: %w", r.TxID, err)
	}
	if !ok {
		return 0, false, nil
	}
	for _, res := range resp.Results {
		if res.KV != nil && res.KV.Key == l.key(r.TxID) {
			return res.KV.ModifyIndex, true, nil
		}
	}
	return 0, false, fmt.Errorf("twopc: writing the log of %s: no result", r.TxID)
}

// get reads a transaction's record; ok is false when there is none.
func (l *kvLog) get(ctx context.Context, txid string) (e entry, ok bool, err error) {
	kv, _, err := l.consul.KV().Get(l.key(txid), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return entry{}, false, fmt.Errorf("twopc: reading the log of %s: %w", txid, err)
	}
	if kv == nil {
		return entry{}, false, nil
	}
	e, err = decodeEntry(kv)
	return e, err == nil, err
}

func decodeEntry(kv *api.KVPair) (entry, error) {
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return entry{}, fmt.Errorf("twopc: log record %s: %w", kv.Key, err)
	}
	return entry{r, kv.ModifyIndex}, nil
}

// transition changes e to state to by CAS and returns the record as written, with won
// true. If someone else changed the record first, it returns the record as it now is,
// with won false: callers look at its state.
func (l *kvLog) transition(ctx context.Context, e entry, to State, reason string, now time.Time) (_ entry, won bool, _ error) {
	for {
		next, err := e.Next(to, reason, now)
		if err != nil {
			return e, false, err
		}
		idx, ok, err := l.cas(ctx, next, e.index)
		if err != nil {
			return e, false, err
		}
		if ok {
			return entry{next, idx}, true, nil
		}
		cur, found, err := l.get(ctx, e.TxID)
		if err != nil {
			return e, false, err
		}
		if !found {
			return e, false, fmt.Errorf("twopc: the log record of %s disappeared", e.TxID)
		}
		if cur.State == e.State {
			// Same state, new index (the same content written again): retry on it.
			e = cur
			continue
		}
		return cur, false, nil
	}
}

// list reads every record of the log.
func (l *kvLog) list(ctx context.Context) ([]entry, error) {
	kvs, _, err := l.consul.KV().List(l.prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("twopc: listing the log: %w", err)
	}
	out := make([]entry, 0, len(kvs))
	for _, kv := range kvs {
		id := strings.TrimPrefix(kv.Key, l.prefix)
		if validTxID(id) != nil {
			continue // the leader lock, or a key that is not ours
		}
		e, err := decodeEntry(kv)
		if err != nil {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// remove deletes a done record if it has not changed since it was read.
func (l *kvLog) remove(ctx context.Context, e entry) error {
	_, _, err := l.consul.KV().DeleteCAS(&api.KVPair{Key: l.key(e.TxID), ModifyIndex: e.index}, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

// ReadLog returns every record of the log at prefix ("" for DefaultPrefix): for
// tools, dashboards and tests.
func ReadLog(ctx context.Context, consul *api.Client, prefix string) ([]Record, error) {
	entries, err := newLog(consul, prefix).list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(entries))
	for i, e := range entries {
		out[i] = e.Record
	}
	return out, nil
}

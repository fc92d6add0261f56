package twopc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Status is a transaction's state at a participant.
type Status string

// The states of a transaction in a Ledger.
const (
	StatusPrepared  Status = "prepared"
	StatusCommitted Status = "committed"
	StatusAborted   Status = "aborted"
)

// ErrConflict: a KV transaction's condition failed (someone changed a key first);
// read again and retry. Ledger's methods retry on it themselves.
var ErrConflict = errors.New("twopc: conflicting change, read again and retry")

// Entry is a transaction as a Ledger records it.
type Entry struct {
	TxID    string          `json:"txid"`
	Status  Status          `json:"status"`
	At      time.Time       `json:"at"`      // when it was prepared (or aborted unprepared)
	Changed time.Time       `json:"changed"` // when the status last changed
	Data    json.RawMessage `json:"data,omitempty"`
	Index   uint64          `json:"-"` // the record's ModifyIndex
}

// Decode unmarshals the entry's data into v.
func (e *Entry) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// Ledger is the bookkeeping of a Participant whose state lives in the KV store: one
// record per transaction at <Prefix>tx/<txid> (status, times, the participant's data)
// and an index of the prepared ones at <Prefix>prepared/<txid>, each change applied in
// one KV transaction together with the participant's own keys (the stock counts, the
// order), so that the prepared state and its effects are persisted atomically. A
// change that loses a race (a CAS fails) is recomputed and retried.
//
// Its Prepared method is the Participant's; Prepare, Commit and Abort take functions
// computing the participant's own operations and implement the idempotence the
// Participant contract asks for.
type Ledger struct {
	Consul *api.Client
	Prefix string // the participant's KV prefix, e.g. "shop/inventory/"
}

func (l *Ledger) prefix() string {
	if strings.HasSuffix(l.Prefix, "/") {
		return l.Prefix
	}
	return l.Prefix + "/"
}

// TxKey is the key of txid's record.
func (l *Ledger) TxKey(txid string) string { return l.prefix() + "tx/" + txid }

func (l *Ledger) preparedKey(txid string) string { return l.prefix() + "prepared/" + txid }

// Get returns txid's record, or nil if there is none.
func (l *Ledger) Get(ctx context.Context, txid string) (*Entry, error) {
	kv, _, err := l.Consul.KV().Get(l.TxKey(txid), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || kv == nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(kv.Value, &e); err != nil {
		return nil, fmt.Errorf("twopc: ledger record %s: %w", kv.Key, err)
	}
	e.Index = kv.ModifyIndex
	return &e, nil
}

// Prepared lists the prepared transactions (the Participant method).
func (l *Ledger) Prepared(ctx context.Context) ([]Prepared, error) {
	kvs, _, err := l.Consul.KV().List(l.prefix()+"prepared/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := make([]Prepared, 0, len(kvs))
	for _, kv := range kvs {
		at, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil {
			at = time.Time{} // unreadable: treat as old, so that it gets resolved
		}
		out = append(out, Prepared{TxID: strings.TrimPrefix(kv.Key, l.prefix()+"prepared/"), At: at})
	}
	return out, nil
}

// Prepare prepares txid unless it has a record: then it answers as the Participant
// contract says (nil for prepared or committed, a Refusal for aborted). Otherwise fn
// computes the participant's data and KV operations (or a Refusal, or an error), which
// are applied atomically with the record and the prepared index. If an operation's
// condition fails, fn runs again on fresh reads, until ctx ends. fn may run even when
// the record exists (it is checked when fn's answer is refused or not applied), so it
// must only read.
func (l *Ledger) Prepare(ctx context.Context, txid string, fn func(ctx context.Context) (data any, ops api.TxnOps, err error)) error {
	return Retry(ctx, func(ctx context.Context) error {
		data, ops, err := fn(ctx)
		if err == nil {
			var raw []byte
			if raw, err = json.Marshal(data); err != nil {
				return err
			}
			now := time.Now()
			rec, _ := json.Marshal(Entry{TxID: txid, Status: StatusPrepared, At: now, Changed: now, Data: raw})
			all := append(api.TxnOps{
				{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.TxKey(txid), Value: rec, Index: 0}},
				{KV: &api.KVTxnOp{Verb: api.KVSet, Key: l.preparedKey(txid), Value: []byte(now.Format(time.RFC3339Nano))}},
			}, ops...)
			if err = l.txn(ctx, all); err == nil {
				return nil
			}
		}
		// Refused, failed or not applied: a repeated Prepare answers from the record.
		e, gerr := l.Get(ctx, txid)
		switch {
		case gerr != nil:
			return gerr
		case e == nil:
			return err
		case e.Status == StatusAborted:
			return Refuse("aborted", "the transaction was aborted here", nil)
		}
		return nil
	})
}

// Commit commits txid if it is prepared, applying fn's operations (fn may be nil)
// atomically with the record; a committed or unknown transaction is left alone.
func (l *Ledger) Commit(ctx context.Context, txid string, fn func(ctx context.Context, e *Entry) (api.TxnOps, error)) error {
	return l.finish(ctx, txid, StatusCommitted, fn)
}

// Abort aborts txid if it is prepared, applying fn's operations (fn may be nil)
// atomically with the record; an aborted transaction is left alone, and an unknown
// one gets an aborted record, so that a Prepare arriving late refuses. It does not
// undo a committed transaction.
func (l *Ledger) Abort(ctx context.Context, txid string, fn func(ctx context.Context, e *Entry) (api.TxnOps, error)) error {
	return l.finish(ctx, txid, StatusAborted, fn)
}

func (l *Ledger) finish(ctx context.Context, txid string, to Status, fn func(ctx context.Context, e *Entry) (api.TxnOps, error)) error {
	return Retry(ctx, func(ctx context.Context) error {
		e, err := l.Get(ctx, txid)
		if err != nil {
			return err
		}
		now := time.Now()
		if e == nil {
			if to != StatusAborted {
				return nil
			}
			rec, _ := json.Marshal(Entry{TxID: txid, Status: StatusAborted, At: now, Changed: now})
			return l.txn(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.TxKey(txid), Value: rec, Index: 0}}})
		}
		if e.Status != StatusPrepared {
			return nil
		}
		var ops api.TxnOps
		if fn != nil {
			if ops, err = fn(ctx, e); err != nil {
				return err
			}
		}
		next := *e
		next.Status, next.Changed = to, now
		rec, _ := json.Marshal(next)
		all := append(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.TxKey(txid), Value: rec, Index: e.Index}},
			{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: l.preparedKey(txid)}},
		}, ops...)
		return l.txn(ctx, all)
	})
}

// txn applies ops atomically; ErrConflict when a condition failed.
func (l *Ledger) txn(ctx context.Context, ops api.TxnOps) error {
	ok, resp, _, err := l.Consul.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if !ok {
		var what []string
		for _, e := range resp.Errors {
			what = append(what, e.What)
		}
		return fmt.Errorf("%w: %s", ErrConflict, strings.Join(what, "; "))
	}
	return nil
}

// Retry runs fn until it returns something other than ErrConflict, waiting a little
// longer (with jitter) after each conflict, or until ctx ends.
func Retry(ctx context.Context, fn func(ctx context.Context) error) error {
	wait := time.Millisecond
	for {
		err := fn(ctx)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 64*time.Millisecond)
	}
}

// Package fsm is the Raft state machine: it decodes committed log entries and applies
// them to the state store, the store's only writer. It also writes and reads the
// snapshots that let Raft compact its log.
package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// FSM applies committed commands to a state.Store.
type FSM struct {
	store  *state.Store
	logger *slog.Logger
}

// Interface guards.
var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an FSM writing to store.
func New(store *state.Store, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{store: store, logger: logger.With("component", "fsm")}
}

// Store returns the state the FSM writes to.
func (f *FSM) Store() *state.Store { return f.store }

// Apply applies one entry; see ApplyBatch.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a run of committed entries in one store transaction, so readers see
// the batch at once and its watches fire once. Each entry still gets its own index. The
// result of each entry is what its writer's Apply future returns: a bool for
// conditional writes, true otherwise, or an error.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	tx := f.store.WriteTxn()
	defer func() { tx.Abort() }()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if typ, ok := isolated(l.Data); ok {
			// A command that can fail half-way must roll back alone: it gets a store
			// transaction of its own, between the batch's parts before and after it.
			tx.Commit()
			if typ == command.Txn {
				out[i] = f.applyTxn(l.Index, l.Data)
			} else {
				own := f.store.WriteTxn()
				res := f.apply(own, l.Index, l.Data)
				if _, failed := res.(error); failed {
					own.Abort()
				} else {
					own.Commit()
				}
				out[i] = res
			}
			tx = f.store.WriteTxn()
			continue
		}
		out[i] = f.apply(tx, l.Index, l.Data)
	}
	tx.Commit()
	return out
}

// isolated reports the commands that need a store transaction of their own.
func isolated(data []byte) (command.Type, bool) {
	typ, _, err := command.Split(data)
	if err != nil {
		return 0, false
	}
	switch typ {
	case command.Txn, command.Register, command.Deregister, command.Session:
		return typ, true
	}
	return typ, false
}

// applyTxn applies a TxnRequest all or nothing.
func (f *FSM) applyTxn(idx uint64, data []byte) any {
	_, body, _ := command.Split(data)
	var req command.TxnRequest
	if err := command.DecodeBody(body, &req); err != nil {
		return err
	}
	tx := f.store.WriteTxn()
	defer tx.Abort()
	results, errs, err := tx.KVTxn(idx, req.Ops, time.Unix(0, req.Now))
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return &command.TxnResponse{Errors: errs}
	}
	tx.Commit()
	return &command.TxnResponse{Results: results}
}

func (f *FSM) apply(tx *state.Txn, idx uint64, data []byte) any {
	typ, body, err := command.Split(data)
	if err != nil {
		// A log we cannot read means this binary is older than the cluster's; applying
		// further entries would make this server's state diverge.
		panic(fmt.Sprintf("fsm: entry %d: %v", idx, err))
	}
	switch typ &^ command.IgnoreUnknown {
	case command.KVS:
		var req command.KVSRequest
		if err := command.DecodeBody(body, &req); err != nil {
			return err
		}
		return applyKVS(tx, idx, &req)
	case command.Session:
		var req command.SessionRequest
		if err := command.DecodeBody(body, &req); err != nil {
			return err
		}
		return applySession(tx, idx, &req)
	case command.Register:
		var req state.RegisterRequest
		if err := command.DecodeBody(body, &req); err != nil {
			return err
		}
		if err := tx.CatalogRegister(idx, &req); err != nil {
			return err
		}
		return true
	case command.Deregister:
		var req command.DeregisterRequest
		if err := command.DecodeBody(body, &req); err != nil {
			return err
		}
		if err := tx.CatalogDeregister(idx, req.Node, req.ServiceID, req.CheckID); err != nil {
			return err
		}
		return true
	case command.TombstoneReap:
		var req command.TombstoneReapRequest
		if err := command.DecodeBody(body, &req); err != nil {
			return err
		}
		if err := tx.ReapTombstones(idx, req.UpTo); err != nil {
			return err
		}
		return true
	}
	if typ&command.IgnoreUnknown != 0 {
		f.logger.Warn("skipping unknown ignorable command", "type", typ, "index", idx)
		return nil
	}
	panic(fmt.Sprintf("fsm: entry %d: unknown command %s; upgrade this server", idx, typ))
}

// ErrUnknownOp is returned for a KV verb this binary does not know.
var ErrUnknownOp = errors.New("fsm: unknown KV operation")

func applyKVS(tx *state.Txn, idx uint64, req *command.KVSRequest) any {
	e := &req.Entry
	var ok = true
	var err error
	switch req.Op {
	case command.KVSet:
		err = tx.KVSet(idx, e)
	case command.KVCAS:
		ok, err = tx.KVSetCAS(idx, e.ModifyIndex, e)
	case command.KVDelete:
		err = tx.KVDelete(idx, e.Key)
	case command.KVDeleteCAS:
		ok, err = tx.KVDeleteCAS(idx, e.ModifyIndex, e.Key)
	case command.KVDeleteTree:
		err = tx.KVDeleteTree(idx, e.Key)
	case command.KVLock:
		ok, err = tx.KVLock(idx, e, time.Unix(0, req.Now))
	case command.KVUnlock:
		ok, err = tx.KVUnlock(idx, e)
	default:
		err = fmt.Errorf("%w %q", ErrUnknownOp, req.Op)
	}
	if err != nil {
		return err
	}
	return ok
}

func applySession(tx *state.Txn, idx uint64, req *command.SessionRequest) any {
	var err error
	switch req.Op {
	case command.SessionCreate:
		err = tx.SessionCreate(idx, &req.Session)
	case command.SessionDestroy:
		err = tx.SessionDestroy(idx, req.Session.ID, time.Unix(0, req.Now))
	default:
		err = fmt.Errorf("%w %q", ErrUnknownOp, req.Op)
	}
	if err != nil {
		return err
	}
	return true
}

// Snapshot captures the state for Raft; Persist runs concurrently with further applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{snap: f.store.Snapshot()}, nil
}

// Restore replaces the whole state with a snapshot's contents.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return ReadSnapshot(rc, f.store)
}

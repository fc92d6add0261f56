package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// Transaction limits: Consul's current limits (txn_max_req_len 512 KiB, 128 operations).
const (
	maxTxnOps   = 128
	maxTxnBytes = 512 << 10
)

// txnOp is one element of a /v1/txn body. Only KV operations exist so far; the others
// (Node, Service, Check) arrive with service discovery.
type txnOp struct {
	KV      *txnKVOp
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
}

type txnKVOp struct {
	Verb    string
	Key     string
	Value   []byte // base64 in JSON, as Consul sends it
	Flags   uint64
	Index   uint64
	Session string
}

// kvPair is Consul's KVPair JSON for transaction results.
type kvPair struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

type txnResult struct {
	KV kvPair
}

type txnError struct {
	OpIndex int
	What    string
}

type txnResponse struct {
	Results []txnResult
	Errors  []txnError
}

// txn serves PUT /v1/txn: KV operations applied atomically in one Raft entry, or, when
// they only read, answered from the leader's state without Raft. 200 with Results, 409
// with Errors (OpIndex and What) when an operation's condition fails; nothing is then
// applied.
func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT")
		return
	}
	if err := s.txnServe(w, r); err != nil && r.Context().Err() == nil {
		writeError(w, err)
	}
}

func (s *Server) txnServe(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > maxTxnBytes {
		return tooLarge("Request body (%d bytes) too large, max size: %d bytes", r.ContentLength, maxTxnBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTxnBytes+1))
	if err != nil {
		return badRequest("Failed to read the request body: %v", err)
	}
	if len(body) > maxTxnBytes {
		return tooLarge("Request body too large, max size: %d bytes", maxTxnBytes)
	}
	var in []txnOp
	if err := json.Unmarshal(body, &in); err != nil {
		return badRequest("Failed to parse body: %v", err)
	}
	if len(in) > maxTxnOps {
		return tooLarge("Transaction contains too many operations (%d > %d)", len(in), maxTxnOps)
	}
	if len(in) == 0 {
		return badRequest("Transaction contains no operations")
	}
	token := tokenOf(r, queryOf(r))
	ops := make([]state.TxnOp, 0, len(in))
	readOnly := true
	for i, op := range in {
		if op.KV == nil {
			return badRequest("Operation %d: only KV operations are supported", i)
		}
		verb := state.TxnVerb(op.KV.Verb)
		if !verb.Known() {
			return badRequest("Operation %d: unknown KV verb %q", i, op.KV.Verb)
		}
		tree := verb == state.TxnGetTree || verb == state.TxnDeleteTree
		if op.KV.Key != "" || !tree {
			if err := s.validKey(op.KV.Key); err != nil {
				return badRequest("Operation %d: %v", i, err)
			}
		}
		if int64(len(op.KV.Value)) > s.cfg.MaxValueBytes {
			return tooLarge("Operation %d: value exceeds %d bytes", i, s.cfg.MaxValueBytes)
		}
		if (verb == state.TxnLock || verb == state.TxnUnlock || verb == state.TxnCheckSession) && op.KV.Session == "" {
			return badRequest("Operation %d: %s needs a Session", i, verb)
		}
		allowed := s.auth.KeyRead(token, op.KV.Key)
		if !verb.ReadOnly() {
			readOnly = false
			allowed = s.auth.KeyWrite(token, op.KV.Key)
		}
		if !allowed {
			return errPermissionDenied
		}
		ops = append(ops, state.TxnOp{Verb: verb, Entry: state.KVEntry{
			Key: op.KV.Key, Value: op.KV.Value, Flags: op.KV.Flags, ModifyIndex: op.KV.Index, Session: op.KV.Session,
		}})
	}
	if readOnly {
		mode := Default
		if has(queryOf(r), "consistent") {
			mode = Consistent
		}
		if err := s.readBarrier(r.Context(), mode); err != nil {
			return err
		}
		idx, results, errs, err := s.backend.Store().KVTxnRead(ops)
		if err != nil {
			return err
		}
		s.setMeta(w, idx, mode)
		return writeTxn(w, results, errs)
	}
	cmd, err := command.Encode(command.Txn, &command.TxnRequest{Ops: ops, Now: time.Now().UnixNano()})
	if err != nil {
		return err
	}
	res, _, err := s.backend.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	resp, ok := res.(*command.TxnResponse)
	if !ok {
		return fmt.Errorf("unexpected transaction result %T", res)
	}
	return writeTxn(w, resp.Results, resp.Errors)
}

func writeTxn(w http.ResponseWriter, results []state.TxnResult, errs []state.TxnError) error {
	var out txnResponse
	code := http.StatusOK
	if len(errs) > 0 {
		code = http.StatusConflict
		for _, e := range errs {
			out.Errors = append(out.Errors, txnError{OpIndex: e.OpIndex, What: e.What})
		}
	} else {
		out.Results = []txnResult{}
		for _, r := range results {
			if r.Entry == nil {
				continue
			}
			e := r.Entry
			out.Results = append(out.Results, txnResult{KV: kvPair{LockIndex: e.LockIndex, Key: e.Key, Flags: e.Flags,
				Value: e.Value, Session: e.Session, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}})
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
	return nil
}

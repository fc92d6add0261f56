package twopc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Participant is a resource manager taking part in transactions: inventory reserving
// stock, payments authorizing an amount. The Server calls it; its methods may be
// called concurrently, for the same transaction too, from several instances of the
// service, and again after a crash, so each must be atomic and idempotent per
// transaction ID:
//
//   - Prepare persists the prepared state (what Commit and Abort need, and the fact
//     that it is prepared) before it returns nil, the vote yes. A *Refusal (see
//     Refuse) is a reasoned no and must leave nothing behind; any other error is a no
//     as well ("could not prepare"), after which the coordinator sends Abort. Called
//     again for a transaction it already prepared or committed, it returns nil without
//     doing anything twice; for one it aborted, a Refusal.
//   - Commit makes a prepared transaction final (the reservation becomes a sale).
//     For a transaction already committed, or unknown, it does nothing.
//   - Abort undoes a prepared transaction (the reservation is released). For one
//     already aborted it does nothing; for an unknown one it should remember the
//     abort, so that a Prepare arriving late refuses. It is never asked to abort a
//     committed transaction (the log decides once); it must not undo one.
//   - Prepared lists the transactions prepared and not yet committed or aborted, with
//     the time each was prepared: the in-doubt resolution works from it.
//
// Ledger implements the bookkeeping for a participant whose state is in the KV store.
type Participant interface {
	Prepare(ctx context.Context, txid string, payload json.RawMessage) error
	Commit(ctx context.Context, txid string) error
	Abort(ctx context.Context, txid string) error
	Prepared(ctx context.Context) ([]Prepared, error)
}

// Prepared is a transaction a participant holds prepared.
type Prepared struct {
	TxID string
	At   time.Time // when it was prepared
}

// Refusal is a participant's reasoned no to Prepare: a machine-readable code that the
// coordinator's caller can act on (orders answers 409 for "out_of_stock" and 402 for
// "declined"), a one-line reason, and optional data (the article that is out of
// stock).
type Refusal struct {
	Participant string          `json:"participant,omitempty"` // set by the coordinator
	Code        string          `json:"code"`
	Reason      string          `json:"reason"`
	Data        json.RawMessage `json:"data,omitempty"`
}

// Refuse returns the error with which Prepare votes no: code and reason, and data
// (nil, or anything that marshals to JSON).
func Refuse(code, reason string, data any) *Refusal {
	r := &Refusal{Code: code, Reason: reason}
	if data != nil {
		if b, err := json.Marshal(data); err == nil {
			r.Data = b
		}
	}
	return r
}

func (r *Refusal) Error() string {
	if r.Participant != "" {
		return fmt.Sprintf("%s refused (%s): %s", r.Participant, r.Code, r.Reason)
	}
	return fmt.Sprintf("refused (%s): %s", r.Code, r.Reason)
}

// Codes of the refusals the Server gives itself, before asking the participant.
const (
	CodeUnknown  = "unknown_transaction" // no such transaction in the log
	CodeDecided  = "already_decided"     // the log has decided the transaction already
	CodeNotAsked = "not_a_participant"   // the log does not list this participant
	CodeMismatch = "payload_mismatch"    // the payload is not the one the log names
	CodeTooLate  = "too_late"            // the prepare deadline has passed
)

// The messages between coordinator and participants: POST <url>/prepare, /commit and
// /abort with JSON bodies.
type prepareRequest struct {
	TxID        string          `json:"txid"`
	Participant string          `json:"participant"`
	Payload     json.RawMessage `json:"payload"`
}

type voteResponse struct {
	Vote    string   `json:"vote"` // "yes" or "no"
	Refusal *Refusal `json:"refusal,omitempty"`
}

type decisionRequest struct {
	TxID        string `json:"txid"`
	Participant string `json:"participant"`
}

type decisionResponse struct {
	State State `json:"state"`
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Server is the participant side of the protocol for one Participant: the HTTP
// endpoints the coordinator calls (ServeHTTP) and the in-doubt resolution (Resolve,
// Start). Set the fields before first use and do not change them afterwards.
//
// Mount it under a prefix of its own and name that prefix in the coordinator's
// Branch.URL:
//
//	mux.Handle("POST /twopc/", srv) // Branch{Name: "inventory", URL: "http://inventory/twopc"}
//
// It answers POST <prefix>/prepare, <prefix>/commit and <prefix>/abort. The endpoints
// may be public: a prepare is done only for a transaction the log lists as preparing,
// with this participant and this payload (its SHA-256 is logged), and a commit or abort
// only when the log holds that decision; anything else is refused.
type Server struct {
	// Name is the participant's name in the transactions (Branch.Name). Required.
	Name string
	// Participant does the work. Required.
	Participant Participant
	// Consul reaches the KV store holding the decision log. Required (Start takes the
	// instance's when nil).
	Consul *api.Client
	// Prefix is the log's KV prefix; default DefaultPrefix.
	Prefix string
	// InDoubtAfter is how long a transaction stays prepared before Resolve asks the
	// log about it. Default 10s.
	InDoubtAfter time.Duration
	// Hooks inject faults (tests).
	Hooks *Hooks
	// Now is the clock compared with the log's deadlines and the times of the
	// prepared transactions; default time.Now. Tests move it forward instead of waiting.
	Now func() time.Time
	// Logger; default slog.Default() (Start takes the instance's when nil).
	Logger *slog.Logger

	once sync.Once
	log  *kvLog
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Consul == nil || s.Participant == nil || s.Name == "" {
			panic("twopc: Server needs Name, Participant and Consul")
		}
		s.log = newLog(s.Consul, s.Prefix)
		if s.InDoubtAfter <= 0 {
			s.InDoubtAfter = 10 * time.Second
		}
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.Now == nil {
			s.Now = time.Now
		}
	})
}

// ServeHTTP answers the coordinator's prepare, commit and abort requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		chassis.WriteJSON(w, http.StatusMethodNotAllowed, errorBody{"use POST"})
		return
	}
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/prepare"):
		s.servePrepare(w, r)
	case strings.HasSuffix(p, "/commit"):
		s.serveDecision(w, r, Commit)
	case strings.HasSuffix(p, "/abort"):
		s.serveDecision(w, r, Abort)
	default:
		chassis.WriteJSON(w, http.StatusNotFound, errorBody{"no such endpoint: " + p})
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) servePrepare(w http.ResponseWriter, r *http.Request) {
	var req prepareRequest
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	if err := s.checkRequest(req.TxID, req.Participant); err != nil {
		chassis.WriteJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	ctx := r.Context()
	if err := s.Hooks.beforePrepare(s.Name, req.TxID); err != nil {
		s.crash(w, "before prepare", req.TxID, err)
		return
	}
	refusal, err := s.admit(ctx, req)
	if err != nil {
		chassis.WriteJSON(w, http.StatusServiceUnavailable, errorBody{err.Error()})
		return
	}
	if refusal == nil {
		err = s.Participant.Prepare(ctx, req.TxID, req.Payload)
		if err != nil && !errors.As(err, &refusal) {
			s.Logger.WarnContext(ctx, "twopc: prepare failed", "participant", s.Name, "txid", req.TxID, "error", err.Error())
			chassis.WriteJSON(w, http.StatusInternalServerError, errorBody{"prepare: " + err.Error()})
			return
		}
	}
	if refusal != nil {
		chassis.WriteJSON(w, http.StatusOK, voteResponse{Vote: "no", Refusal: refusal})
		return
	}
	if err := s.Hooks.afterPrepare(s.Name, req.TxID); err != nil {
		s.crash(w, "after prepare", req.TxID, err)
		return
	}
	chassis.WriteJSON(w, http.StatusOK, voteResponse{Vote: "yes"})
}

// admit checks a prepare request against the log: a refusal, or nil to go ahead.
func (s *Server) admit(ctx context.Context, req prepareRequest) (*Refusal, error) {
	e, ok, err := s.log.get(ctx, req.TxID)
	if err != nil {
		return nil, err
	}
	switch m, listed := e.member(s.Name); {
	case !ok:
		return Refuse(CodeUnknown, "no transaction "+req.TxID+" in the log", nil), nil
	case e.State != Preparing:
		return Refuse(CodeDecided, "the log says "+string(e.Outcome(s.Now())), nil), nil
	case !listed:
		return Refuse(CodeNotAsked, s.Name+" is not a participant of "+req.TxID, nil), nil
	case m.Digest != digest(req.Payload):
		return Refuse(CodeMismatch, "the payload is not the one the coordinator logged", nil), nil
	case s.Now().After(e.Deadline):
		return Refuse(CodeTooLate, "the prepare deadline has passed", nil), nil
	}
	return nil, nil
}

func (s *Server) serveDecision(w http.ResponseWriter, r *http.Request, d State) {
	var req decisionRequest
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	if err := s.checkRequest(req.TxID, req.Participant); err != nil {
		chassis.WriteJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	ctx := r.Context()
	if err := s.Hooks.beforeApply(s.Name, req.TxID, d); err != nil {
		s.crash(w, "before "+string(d), req.TxID, err)
		return
	}
	e, ok, err := s.log.get(ctx, req.TxID)
	if err != nil {
		chassis.WriteJSON(w, http.StatusServiceUnavailable, errorBody{err.Error()})
		return
	}
	if !ok || (e.State != d && !(e.State == Done && e.Decision == d)) {
		chassis.WriteJSON(w, http.StatusConflict, errorBody{fmt.Sprintf("the log does not say %s for %s", d, req.TxID)})
		return
	}
	if err := s.apply(ctx, req.TxID, d); err != nil {
		chassis.WriteJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
		return
	}
	chassis.WriteJSON(w, http.StatusOK, decisionResponse{State: d})
}

func (s *Server) checkRequest(txid, participant string) error {
	if participant != s.Name {
		return fmt.Errorf("this is participant %q, not %q", s.Name, participant)
	}
	return validTxID(txid)
}

func (s *Server) apply(ctx context.Context, txid string, d State) error {
	var err error
	if d == Commit {
		err = s.Participant.Commit(ctx, txid)
	} else {
		err = s.Participant.Abort(ctx, txid)
	}
	if err != nil {
		s.Logger.WarnContext(ctx, "twopc: applying the decision failed", "participant", s.Name, "txid", txid, "decision", string(d), "error", err.Error())
		return fmt.Errorf("%s: %w", d, err)
	}
	return nil
}

// crash answers a request whose hook injected a crash: 500, nothing more done.
func (s *Server) crash(w http.ResponseWriter, step, txid string, err error) {
	s.Logger.Info("twopc: crash injected", "participant", s.Name, "step", step, "txid", txid, "error", err.Error())
	chassis.WriteJSON(w, http.StatusInternalServerError, errorBody{"crash injected " + step + ": " + err.Error()})
}

// Resolve settles the transactions this participant has held prepared for longer
// than InDoubtAfter: it reads each one's record in the log and applies the decision
// found there. A record still preparing after its deadline is first changed to abort
// by a CAS (presumed abort: if the coordinator's commit won the race, the CAS fails
// and the commit is applied instead); one still preparing before its deadline is left
// alone. A missing record means abort too: records are written before any prepare is
// sent and removed only after every participant has acknowledged the decision.
// Resolve returns how many transactions it settled.
func (s *Server) Resolve(ctx context.Context) (int, error) {
	s.init()
	list, err := s.Participant.Prepared(ctx)
	if err != nil {
		return 0, fmt.Errorf("twopc: %s: listing prepared transactions: %w", s.Name, err)
	}
	settled := 0
	var errs []error
	for _, p := range list {
		if s.Now().Sub(p.At) < s.InDoubtAfter {
			continue
		}
		d, err := s.inDoubt(ctx, p.TxID)
		if err == nil && d != Preparing {
			if err = s.apply(ctx, p.TxID, d); err == nil {
				settled++
				s.Logger.InfoContext(ctx, "twopc: in-doubt transaction settled", "participant", s.Name, "txid", p.TxID, "decision", string(d))
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return settled, errors.Join(errs...)
}

// inDoubt returns what the log says about txid, presuming abort when it is due.
func (s *Server) inDoubt(ctx context.Context, txid string) (State, error) {
	e, ok, err := s.log.get(ctx, txid)
	if err != nil {
		return Preparing, err
	}
	if !ok {
		return Abort, nil
	}
	now := s.Now()
	if e.State == Preparing && e.Outcome(now) == Abort {
		e, _, err = s.log.transition(ctx, e, Abort, "presumed abort: "+s.Name+" found no decision after the deadline", now)
		if err != nil {
			return Preparing, err
		}
	}
	return e.Outcome(now), nil
}

// Start runs Resolve in the background on the instance (every InDoubtAfter/2, with
// jitter) until it shuts down. Every instance of the participant's service may run it:
// the participant's methods are idempotent and the log changes are CASes.
func (s *Server) Start(in *chassis.Instance) {
	if s.Consul == nil {
		s.Consul = in.Consul()
	}
	if s.Logger == nil {
		s.Logger = in.Logger()
	}
	s.init()
	in.Go(func(ctx context.Context) {
		every := max(s.InDoubtAfter/2, 50*time.Millisecond)
		for {
			t := time.NewTimer(every/2 + rand.N(every))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if _, err := s.Resolve(ctx); err != nil && ctx.Err() == nil {
				s.Logger.Warn("twopc: in-doubt resolution", "participant", s.Name, "error", err.Error())
			}
		}
	})
}

// Package paymentssvc is the shop's payments service (examples/shop/README.md): a
// simulated payment provider taking part in the checkout's two-phase commit
// (pkg/chassis/twopc). Prepare authorizes the amount, commit captures it, abort
// voids it.
//
//	POST /twopc/prepare   authorize (payload: Authorization), or refuse "declined"
//	POST /twopc/commit    capture
//	POST /twopc/abort     void
//	GET  /payments/{id}   Payment: the state of a transaction's payment; 404 if none
//
// It has no public route (tag wolke.http.enable=false): orders calls it with the
// chassis client at http://payments/twopc.
//
// The dynamic configuration config/payments/decline_percent (0-100, default 0)
// declines that share of authorizations, to show a checkout that fails with 402.
//
// Payments are a twopc.Ledger under shop/payments/ (tx/<txid>, prepared/<txid>): the
// authorization is persisted before the vote yes, so that a crash cannot lose it.
package paymentssvc

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/pkg/chassis"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// Name is the service's name in the catalog and in the checkout's transactions.
const Name = "payments"

// KeyPrefix is where the payments are in the KV store.
const KeyPrefix = "shop/payments/"

// ParticipantURL is the base URL of the two-phase-commit endpoints (twopc.Branch.URL).
const ParticipantURL = "http://" + Name + "/twopc"

// KeyDeclinePercent is the dynamic configuration key (under config/payments/) of the
// share of authorizations declined.
const KeyDeclinePercent = "decline_percent"

// MaxAmountCents bounds one payment (a million in the shop's currency).
const MaxAmountCents = 100_000_000

// Codes of the refusals (twopc.Refusal.Code) of an authorization.
const (
	CodeDeclined = "declined"
	CodeInvalid  = "invalid"
)

// Authorization is the payload of a prepare: who pays how much for which order.
type Authorization struct {
	User        string `json:"user"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// The states of a payment.
const (
	Authorized = "authorized"
	Captured   = "captured"
	Voided     = "voided"
)

// Payment is the answer of GET /payments/{id}.
type Payment struct {
	ID string `json:"id"` // the transaction's ID
	Authorization
	Status  string    `json:"status"` // authorized, captured or voided
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"`
}

type config struct {
	InDoubtAfter time.Duration `env:"TWOPC_IN_DOUBT_AFTER" default:"10s" help:"how long an authorization stays prepared before payments asks the decision log about it"`
}

// Service returns the payments service, for chassis.Main (or chassis.Run in a test).
func Service() chassis.Service {
	var cfg config
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.enable=false"},
		Config:  &cfg,
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			p := New(in.Consul(), in.Dynamic().Int(KeyDeclinePercent, 0, chassis.Between(0, 100)).Get)
			srv := &twopc.Server{Name: Name, Participant: p, Consul: in.Consul(), InDoubtAfter: cfg.InDoubtAfter, Logger: in.Logger()}
			srv.Start(in)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /payments/{id}", p.getPayment)
			mux.Handle("POST /twopc/", srv)
			mux.HandleFunc("/", chassis.NotFound)
			return mux, nil
		},
	}
}

// Payments is the simulated provider and the twopc.Participant that authorizes.
type Payments struct {
	*twopc.Ledger  // Prepared
	declinePercent func() int
}

// New returns the payments kept in the KV store behind consul; declinePercent says
// which share of authorizations to decline (nil: none).
func New(consul *api.Client, declinePercent func() int) *Payments {
	if declinePercent == nil {
		declinePercent = func() int { return 0 }
	}
	return &Payments{Ledger: &twopc.Ledger{Consul: consul, Prefix: KeyPrefix}, declinePercent: declinePercent}
}

// Prepare authorizes the amount, or declines it (decline_percent of the time).
func (p *Payments) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	var a Authorization
	if err := json.Unmarshal(payload, &a); err != nil {
		return twopc.Refuse(CodeInvalid, "not an authorization: "+err.Error(), nil)
	}
	if a.AmountCents <= 0 || a.AmountCents > MaxAmountCents || a.User == "" {
		return twopc.Refuse(CodeInvalid, fmt.Sprintf("cannot authorize %d cents for %q", a.AmountCents, a.User), nil)
	}
	return p.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		if pct := p.declinePercent(); pct > 0 && rand.IntN(100) < pct {
			return nil, nil, twopc.Refuse(CodeDeclined, "the payment was declined", nil)
		}
		return a, nil, nil
	})
}

// Commit captures the authorized amount.
func (p *Payments) Commit(ctx context.Context, txid string) error {
	return p.Ledger.Commit(ctx, txid, nil)
}

// Abort voids the authorization.
func (p *Payments) Abort(ctx context.Context, txid string) error {
	return p.Ledger.Abort(ctx, txid, nil)
}

// Payment returns a transaction's payment, or nil if it has none.
func (p *Payments) Payment(ctx context.Context, id string) (*Payment, error) {
	e, err := p.Ledger.Get(ctx, id)
	if err != nil || e == nil || len(e.Data) == 0 {
		return nil, err // no payment, or an abort of one never authorized
	}
	pay := &Payment{ID: id, Created: e.At, Changed: e.Changed}
	if err := e.Decode(&pay.Authorization); err != nil {
		return nil, err
	}
	switch e.Status {
	case twopc.StatusPrepared:
		pay.Status = Authorized
	case twopc.StatusCommitted:
		pay.Status = Captured
	default:
		pay.Status = Voided
	}
	return pay, nil
}

func (p *Payments) getPayment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !chassis.ValidKeySegment(id, 128) {
		chassis.WriteError(w, http.StatusNotFound, "no payment "+strconv.Quote(id))
		return
	}
	pay, err := p.Payment(r.Context(), id)
	switch {
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, "reading the payment: "+err.Error())
	case pay == nil:
		chassis.WriteError(w, http.StatusNotFound, "no payment "+strconv.Quote(id))
	default:
		chassis.WriteJSON(w, http.StatusOK, pay)
	}
}

var _ twopc.Participant = (*Payments)(nil)

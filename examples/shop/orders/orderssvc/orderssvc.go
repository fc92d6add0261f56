// Package orderssvc is the shop's orders service (examples/shop/README.md): checkout
// as a two-phase commit (pkg/chassis/twopc) across inventory, payments and orders
// itself, and the users' order history.
//
//	POST /checkout      201 Order; 409 {"error","article_id"} out of stock; 402 payment
//	                    declined; 400 empty cart; 401 without X-Wolke-Identity; 503
//	                    {"error","order_id"} when the outcome is not known yet
//	GET  /orders        [Order], newest first
//	GET  /orders/{id}   Order; 404 if it is not the user's or did not go through
//	POST /twopc/...     the participant's endpoints (pending order)
//
// The user is the gateway-verified X-Wolke-Identity (route tag
// wolke.http.path=/api/orders, JWT policy at the gateway).
//
// # Checkout
//
//  1. GET http://cart/cart with the user's X-Wolke-Identity: the items, their names and
//     prices, and the cart's ETag.
//  2. A new order ID is the transaction's ID. The coordinator runs the transaction:
//     inventory reserves the items (inventorysvc.Reservation), payments authorizes
//     the total (paymentssvc.Authorization), orders writes the order as pending.
//  3. Committed: the order is confirmed, the cart is emptied with If-Match: <ETag>
//     (an article added meanwhile stays), 201. Aborted: 409 when the inventory refused
//     (with the article), 402 when payments declined, 503 otherwise; nothing is kept
//     and the cart stays as it was.
//
// If the coordinator dies or the decision cannot be written, the answer is 503 with
// the order's ID: the transaction is finished by recovery (the instance holding the
// lock twopc/leader re-sends decisions and aborts what was not decided in time), and
// the order shows up in GET /orders if it committed.
//
// # Storage
//
// Orders are a twopc.Ledger under shop/orders/ (tx/<id>: the order and its status,
// prepared/<id>) and, written in the same KV transactions, shop/orders/users/<user>/<id>,
// the order as the user sees it (pending, then confirmed; removed on abort), which
// GET /orders lists with one read.
package orderssvc

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/inventory/inventorysvc"
	"github.com/wolke-platform/wolke/examples/shop/payments/paymentssvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// Name is the service's name in the catalog and in the checkout's transactions.
const Name = "orders"

// KeyPrefix is where the orders are in the KV store.
const KeyPrefix = "shop/orders/"

// ParticipantURL is the base URL of the orders' two-phase-commit endpoints.
const ParticipantURL = "http://" + Name + "/twopc"

// IdentityHeader names the user; the gateway sets it.
const IdentityHeader = "X-Wolke-Identity"

// The states of an order as the user sees it.
const (
	Pending   = "pending"   // prepared: the checkout is being decided
	Confirmed = "confirmed" // committed
)

// Order is an order.
type Order struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Items      []Item    `json:"items"`
	TotalCents int64     `json:"total_cents"`
	Status     string    `json:"status"`
	Created    time.Time `json:"created"`
}

// Item is one line of an order (and of a cart).
type Item struct {
	ArticleID  string `json:"article_id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Qty        int    `json:"qty"`
}

// cart is the cart service's answer (examples/shop/README.md).
type cart struct {
	Items []Item `json:"items"`
}

type config struct {
	PrepareTimeout time.Duration `env:"TWOPC_PREPARE_TIMEOUT" default:"5s" help:"how long a checkout waits for the votes; a transaction undecided after it is aborted"`
	InDoubtAfter   time.Duration `env:"TWOPC_IN_DOUBT_AFTER" default:"10s" help:"how long an order stays pending before orders asks the decision log about it"`
	RecoverEvery   time.Duration `env:"TWOPC_RECOVER_EVERY" default:"1s" help:"how often the leader finishes interrupted transactions"`
	Retention      time.Duration `env:"TWOPC_RETENTION" default:"24h" help:"how long finished transactions stay in the decision log"`
}

// Service returns the orders service, for chassis.Main (or chassis.Run in a test).
// Every instance coordinates checkouts; the one holding the lock twopc/leader also
// recovers interrupted ones.
func Service() chassis.Service {
	var cfg config
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.path=/api/orders"},
		Config:  &cfg,
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			h := &handler{
				orders: &Orders{Ledger: &twopc.Ledger{Consul: in.Consul(), Prefix: KeyPrefix}, consul: in.Consul()},
				client: in.Client(),
				coord: &twopc.Coordinator{
					Consul: in.Consul(), Client: in.Client(), Name: in.ID(), PrepareTimeout: cfg.PrepareTimeout,
					ResendAfter: cfg.PrepareTimeout, Retention: cfg.Retention, Logger: in.Logger(),
				},
				in: in,
			}
			srv := &twopc.Server{Name: Name, Participant: h.orders, Consul: in.Consul(), InDoubtAfter: cfg.InDoubtAfter, Logger: in.Logger()}
			srv.Start(in)
			h.coord.Start(in, cfg.RecoverEvery)
			mux := http.NewServeMux()
			mux.HandleFunc("POST /checkout", h.withUser(h.checkout))
			mux.HandleFunc("GET /orders", h.withUser(h.list))
			mux.HandleFunc("GET /orders/{id}", h.withUser(h.get))
			mux.Handle("POST /twopc/", srv)
			mux.HandleFunc("/", chassis.NotFound)
			return mux, nil
		},
	}
}

type handler struct {
	orders *Orders
	client *http.Client
	coord  *twopc.Coordinator
	in     *chassis.Instance
}

func (h *handler) withUser(fn func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get(IdentityHeader)
		if user == "" {
			chassis.WriteError(w, http.StatusUnauthorized, "sign in first (no "+IdentityHeader+")")
			return
		}
		fn(w, r, user)
	}
}

func (h *handler) checkout(w http.ResponseWriter, r *http.Request, user string) {
	ctx := r.Context()
	c, etag, err := h.cart(ctx, user, http.MethodGet, "")
	if err != nil {
		h.in.Logger().WarnContext(ctx, "checkout: reading the cart", "error", err.Error())
		chassis.WriteError(w, http.StatusServiceUnavailable, "the cart cannot be read: "+err.Error())
		return
	}
	if len(c.Items) == 0 {
		chassis.WriteError(w, http.StatusBadRequest, "the cart is empty")
		return
	}
	o := Order{ID: newOrderID(), User: user, Items: c.Items, Status: Pending, Created: time.Now().UTC()}
	lines := make([]inventorysvc.Line, 0, len(c.Items))
	for _, it := range c.Items {
		if it.Qty < 1 || it.PriceCents < 0 {
			chassis.WriteError(w, http.StatusBadRequest, "the cart has a bad line: article "+it.ArticleID)
			return
		}
		o.TotalCents += it.PriceCents * int64(it.Qty)
		lines = append(lines, inventorysvc.Line{ArticleID: it.ArticleID, Qty: it.Qty})
	}
	out, err := h.coord.Run(ctx, o.ID, []twopc.Branch{
		{Name: inventorysvc.Name, URL: inventorysvc.ParticipantURL, Payload: inventorysvc.Reservation{Items: lines}},
		{Name: paymentssvc.Name, URL: paymentssvc.ParticipantURL, Payload: paymentssvc.Authorization{User: user, OrderID: o.ID, AmountCents: o.TotalCents}},
		{Name: Name, URL: ParticipantURL, Payload: o},
	})
	if err != nil {
		h.in.Logger().WarnContext(ctx, "checkout: outcome in doubt", "order", o.ID, "error", err.Error())
		chassis.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{
			"error":    "the checkout was interrupted; the order is settled within a minute (see your orders)",
			"order_id": o.ID,
		})
		return
	}
	if !out.Committed {
		if ref := out.Refused(inventorysvc.Name); ref != nil && ref.Code == inventorysvc.CodeOutOfStock {
			var oos inventorysvc.OutOfStock
			_ = json.Unmarshal(ref.Data, &oos)
			chassis.WriteJSON(w, http.StatusConflict, map[string]string{"error": h.outOfStock(c, oos), "article_id": oos.ArticleID})
			return
		}
		if ref := out.Refused(paymentssvc.Name); ref != nil && ref.Code == paymentssvc.CodeDeclined {
			chassis.WriteError(w, http.StatusPaymentRequired, "the payment was declined")
			return
		}
		h.in.Logger().WarnContext(ctx, "checkout: aborted", "order", o.ID, "reason", out.Reason)
		chassis.WriteError(w, http.StatusServiceUnavailable, "the checkout failed, please try again: "+out.Reason)
		return
	}
	// The cart as it was checked out goes; an article added meanwhile stays.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, _, err := h.cart(dctx, user, http.MethodDelete, etag); err != nil {
		h.in.Logger().InfoContext(ctx, "checkout: the cart was not emptied", "order", o.ID, "error", err.Error())
	}
	o.Status = Confirmed
	chassis.WriteJSON(w, http.StatusCreated, o)
}

func (h *handler) outOfStock(c cart, oos inventorysvc.OutOfStock) string {
	name := "article " + oos.ArticleID
	for _, it := range c.Items {
		if it.ArticleID == oos.ArticleID && it.Name != "" {
			name = it.Name
		}
	}
	switch oos.Available {
	case 0:
		return name + " is out of stock"
	case 1:
		return name + ": only 1 left"
	}
	return name + ": only " + strconv.Itoa(oos.Available) + " left"
}

// cart sends GET or DELETE /cart for user (DELETE with If-Match: etag) and returns
// the cart and its ETag.
func (h *handler) cart(ctx context.Context, user, method, etag string) (cart, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://cart/cart", nil)
	if err != nil {
		return cart{}, "", err
	}
	req.Header.Set(IdentityHeader, user)
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-Match", etag)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return cart{}, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return cart{}, "", fmt.Errorf("%s /cart: %d %s", method, resp.StatusCode, e.Error)
	}
	var c cart
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return cart{}, "", fmt.Errorf("%s /cart: %w", method, err)
	}
	return c, resp.Header.Get("ETag"), nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, user string) {
	orders, err := h.orders.List(r.Context(), user)
	if err != nil {
		chassis.WriteError(w, http.StatusServiceUnavailable, "reading the orders: "+err.Error())
		return
	}
	chassis.WriteJSON(w, http.StatusOK, orders)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	o, err := h.orders.Get(r.Context(), id)
	switch {
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, "reading the order: "+err.Error())
	case o == nil || o.User != user:
		chassis.WriteError(w, http.StatusNotFound, "no order "+strconv.Quote(id))
	default:
		chassis.WriteJSON(w, http.StatusOK, o)
	}
}

// newOrderID returns a new order ID: the time in milliseconds and 24 random bits, in
// hex, so that IDs sort by creation ("o-0193f5a2b3c4-9f2e1a").
func newOrderID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("o-%012x-%s", time.Now().UnixMilli(), hex.EncodeToString(b[:]))
}

// Orders is the order store and the twopc.Participant that writes pending orders.
type Orders struct {
	*twopc.Ledger // Prepared
	consul        *api.Client
}

func userPrefix(user string) string { return KeyPrefix + "users/" + url.PathEscape(user) + "/" }

func (s *Orders) userKey(o *Order) string { return userPrefix(o.User) + o.ID }

func (s *Orders) setUserOrder(o Order, status string) (api.TxnOps, error) {
	o.Status = status
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	return api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.userKey(&o), Value: b}}}, nil
}

func decodeOrder(e *twopc.Entry) (Order, error) {
	var o Order
	if err := e.Decode(&o); err != nil {
		return o, fmt.Errorf("order %s: %w", e.TxID, err)
	}
	return o, nil
}

// Prepare writes the order as pending.
func (s *Orders) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	var o Order
	if err := json.Unmarshal(payload, &o); err != nil {
		return twopc.Refuse("invalid", "not an order: "+err.Error(), nil)
	}
	if o.ID != txid || o.User == "" || len(o.Items) == 0 {
		return twopc.Refuse("invalid", "the order must have the transaction's ID, a user and items", nil)
	}
	o.Status = Pending
	return s.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		ops, err := s.setUserOrder(o, Pending)
		return o, ops, err
	})
}

// Commit confirms the order.
func (s *Orders) Commit(ctx context.Context, txid string) error {
	return s.Ledger.Commit(ctx, txid, func(ctx context.Context, e *twopc.Entry) (api.TxnOps, error) {
		o, err := decodeOrder(e)
		if err != nil {
			return nil, err
		}
		return s.setUserOrder(o, Confirmed)
	})
}

// Abort drops the order.
func (s *Orders) Abort(ctx context.Context, txid string) error {
	return s.Ledger.Abort(ctx, txid, func(ctx context.Context, e *twopc.Entry) (api.TxnOps, error) {
		o, err := decodeOrder(e)
		if err != nil {
			return nil, err
		}
		return api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.userKey(&o)}}}, nil
	})
}

// Get returns the order with the ID, pending or confirmed; nil if there is none or it
// was dropped.
func (s *Orders) Get(ctx context.Context, id string) (*Order, error) {
	if !chassis.ValidKeySegment(id, 128) {
		return nil, nil
	}
	e, err := s.Ledger.Get(ctx, id)
	if err != nil || e == nil || e.Status == twopc.StatusAborted {
		return nil, err
	}
	o, err := decodeOrder(e)
	if err != nil {
		return nil, err
	}
	o.Status = Pending
	if e.Status == twopc.StatusCommitted {
		o.Status = Confirmed
	}
	return &o, nil
}

// List returns the user's orders, pending and confirmed, newest first.
func (s *Orders) List(ctx context.Context, user string) ([]Order, error) {
	kvs, _, err := s.consul.KV().List(userPrefix(user), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := make([]Order, 0, len(kvs))
	for _, kv := range kvs {
		var o Order
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return nil, fmt.Errorf("order %s: %w", kv.Key, err)
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Order) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

var _ twopc.Participant = (*Orders)(nil)

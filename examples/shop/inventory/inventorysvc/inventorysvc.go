// Package inventorysvc is the shop's inventory service (examples/shop/README.md): the
// stock of every article, and a participant of the checkout's two-phase commit
// (pkg/chassis/twopc) that reserves stock.
//
//	GET  /stock/{article_id}   {"article_id","available"}; 404 for an unknown article
//	POST /twopc/prepare        reserve (payload: Reservation)
//	POST /twopc/commit         the reservation becomes a sale
//	POST /twopc/abort          the reservation is released
//
// It has no public route (tag wolke.http.enable=false): orders calls it with the
// chassis client at http://inventory/twopc.
//
// # Storage
//
// The available count of an article is the KV key shop/inventory/stock/<article_id>,
// a decimal number. A key that does not exist yet stands for the article's initial
// stock, shopdata's StockHint: the first reservation creates it (a CAS on index 0).
// The reservations are a twopc.Ledger under shop/inventory/ (tx/<txid> and
// prepared/<txid>).
//
// # Never oversold
//
// A reservation takes the quantities off the counts in one KV transaction, with a CAS
// on each count at the index it read and the ledger record of the transaction: if any
// count changed meanwhile (another instance sold it), nothing is applied and the
// reservation is computed again from fresh reads. So a count never goes below zero,
// however many instances sell the same article. Within one instance, reservations of
// an article queue on a mutex first, so that CAS conflicts happen only between
// instances. A sale (commit) leaves the counts as they are; a release (abort) adds the
// quantities back, by CAS as well.
package inventorysvc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/pkg/chassis"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// Name is the service's name in the catalog and in the checkout's transactions.
const Name = "inventory"

// KeyPrefix is where the inventory keeps its state in the KV store.
const KeyPrefix = "shop/inventory/"

// ParticipantURL is the base URL of the two-phase-commit endpoints (twopc.Branch.URL).
const ParticipantURL = "http://" + Name + "/twopc"

// Limits of a reservation.
const (
	MaxLines = 100  // different articles (a KV transaction has at most 128 operations)
	MaxQty   = 9999 // of one article
)

// Codes of the refusals (twopc.Refusal.Code) of a reservation.
const (
	CodeOutOfStock = "out_of_stock" // Data: OutOfStock
	CodeInvalid    = "invalid"      // a reservation that cannot be made at all
)

// Reservation is the payload of a prepare: the articles and quantities to reserve.
type Reservation struct {
	Items []Line `json:"items"`
}

// Line is one article of a reservation.
type Line struct {
	ArticleID string `json:"article_id"`
	Qty       int    `json:"qty"`
}

// OutOfStock is the data of an out_of_stock refusal: the first article short of
// stock and how many pieces are left of it.
type OutOfStock struct {
	ArticleID string `json:"article_id"`
	Available int    `json:"available"`
}

// Stock is the answer of GET /stock/{article_id}.
type Stock struct {
	ArticleID string `json:"article_id"`
	Available int    `json:"available"`
}

type config struct {
	InDoubtAfter time.Duration `env:"TWOPC_IN_DOUBT_AFTER" default:"10s" help:"how long a reservation stays prepared before the inventory asks the decision log about it"`
}

// Service returns the inventory service, for chassis.Main (or chassis.Run in a test).
func Service() chassis.Service {
	var cfg config
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.enable=false"},
		Config:  &cfg,
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			inv := New(in.Consul(), shopdata.Default())
			srv := &twopc.Server{Name: Name, Participant: inv, Consul: in.Consul(), InDoubtAfter: cfg.InDoubtAfter, Logger: in.Logger()}
			srv.Start(in)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /stock/{article_id}", inv.getStock)
			mux.Handle("POST /twopc/", srv)
			mux.HandleFunc("/", chassis.NotFound)
			return mux, nil
		},
	}
}

// Articles is what the inventory needs of the data set: an article's initial stock.
type Articles interface {
	Article(id string) (shopdata.Article, bool)
}

// Inventory is the stock and the twopc.Participant that reserves it.
type Inventory struct {
	*twopc.Ledger // Prepared
	consul        *api.Client
	articles      Articles
	locks         keyLocks
}

// New returns the inventory kept in the KV store behind consul, its initial stock
// from articles.
func New(consul *api.Client, articles Articles) *Inventory {
	return &Inventory{
		Ledger:   &twopc.Ledger{Consul: consul, Prefix: KeyPrefix},
		consul:   consul,
		articles: articles,
	}
}

// StockKey is the KV key of an article's available count.
func StockKey(articleID string) string { return KeyPrefix + "stock/" + articleID }

// count is an article's available count and the ModifyIndex of its key (0: no key
// yet, the count is the initial stock).
type count struct {
	n     int
	index uint64
}

// counts reads the counts of the articles in one read-only KV transaction. An
// unknown article has no count (ok false).
func (inv *Inventory) counts(ctx context.Context, ids []string) (map[string]count, error) {
	ops := make(api.TxnOps, len(ids))
	for i, id := range ids {
		ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: StockKey(id)}}
	}
	ok, resp, _, err := inv.consul.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("reading the stock: %v", resp.Errors)
	}
	stored := map[string]*api.KVPair{}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.ModifyIndex != 0 {
			stored[r.KV.Key] = r.KV
		}
	}
	out := make(map[string]count, len(ids))
	for _, id := range ids {
		if kv := stored[StockKey(id)]; kv != nil {
			n, err := strconv.Atoi(strings.TrimSpace(string(kv.Value)))
			if err != nil {
				return nil, fmt.Errorf("stock of %s: %q is not a number", id, kv.Value)
			}
			out[id] = count{n, kv.ModifyIndex}
		} else if a, ok := inv.articles.Article(id); ok {
			out[id] = count{a.StockHint, 0}
		}
	}
	return out, nil
}

// casOps sets each line's count to its read value plus sign × qty, if unchanged.
func casOps(lines []Line, counts map[string]count, sign int) api.TxnOps {
	ops := make(api.TxnOps, len(lines))
	for i, l := range lines {
		c := counts[l.ArticleID]
		v := strconv.Itoa(c.n + sign*l.Qty)
		ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: StockKey(l.ArticleID), Value: []byte(v), Index: c.index}}
	}
	return ops
}

// normalize checks a reservation and merges lines of the same article, in article
// order.
func normalize(r Reservation) ([]Line, error) {
	qty := map[string]int{}
	for _, l := range r.Items {
		if !chassis.ValidKeySegment(l.ArticleID, 64) {
			return nil, fmt.Errorf("bad article ID %q", l.ArticleID)
		}
		if l.Qty < 1 || l.Qty > MaxQty {
			return nil, fmt.Errorf("article %s: quantity %d is not 1 to %d", l.ArticleID, l.Qty, MaxQty)
		}
		qty[l.ArticleID] += l.Qty
		if qty[l.ArticleID] > MaxQty {
			return nil, fmt.Errorf("article %s: more than %d pieces", l.ArticleID, MaxQty)
		}
	}
	if len(qty) == 0 || len(qty) > MaxLines {
		return nil, fmt.Errorf("a reservation has 1 to %d articles, not %d", MaxLines, len(qty))
	}
	lines := make([]Line, 0, len(qty))
	for id, q := range qty {
		lines = append(lines, Line{ArticleID: id, Qty: q})
	}
	slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.ArticleID, b.ArticleID) })
	return lines, nil
}

func ids(lines []Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.ArticleID
	}
	return out
}

// Prepare reserves the payload's Reservation: all of it, or nothing with a refusal
// naming the first article short of stock.
func (inv *Inventory) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	var r Reservation
	if err := json.Unmarshal(payload, &r); err != nil {
		return twopc.Refuse(CodeInvalid, "not a reservation: "+err.Error(), nil)
	}
	lines, err := normalize(r)
	if err != nil {
		return twopc.Refuse(CodeInvalid, err.Error(), nil)
	}
	defer inv.locks.lock(ids(lines))()
	return inv.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		counts, err := inv.counts(ctx, ids(lines))
		if err != nil {
			return nil, nil, err
		}
		for _, l := range lines {
			c, known := counts[l.ArticleID]
			if !known || c.n < l.Qty {
				reason := fmt.Sprintf("article %s: %d wanted, %d available", l.ArticleID, l.Qty, max(c.n, 0))
				if !known {
					reason = "article " + l.ArticleID + " does not exist"
				}
				return nil, nil, twopc.Refuse(CodeOutOfStock, reason, OutOfStock{ArticleID: l.ArticleID, Available: max(c.n, 0)})
			}
		}
		return Reservation{Items: lines}, casOps(lines, counts, -1), nil
	})
}

// Commit turns the reservation into a sale: the counts stay as they are.
func (inv *Inventory) Commit(ctx context.Context, txid string) error {
	return inv.Ledger.Commit(ctx, txid, nil)
}

// Abort releases the reservation: its quantities go back to the counts.
func (inv *Inventory) Abort(ctx context.Context, txid string) error {
	e, err := inv.Ledger.Get(ctx, txid)
	if err != nil {
		return err
	}
	if e != nil && e.Status == twopc.StatusPrepared {
		var r Reservation
		if err := e.Decode(&r); err != nil {
			return fmt.Errorf("reservation %s: %w", txid, err)
		}
		defer inv.locks.lock(ids(r.Items))()
	}
	return inv.Ledger.Abort(ctx, txid, func(ctx context.Context, e *twopc.Entry) (api.TxnOps, error) {
		var r Reservation
		if err := e.Decode(&r); err != nil {
			return nil, fmt.Errorf("reservation %s: %w", txid, err)
		}
		counts, err := inv.counts(ctx, ids(r.Items))
		if err != nil {
			return nil, err
		}
		for _, l := range r.Items {
			if _, ok := counts[l.ArticleID]; !ok {
				counts[l.ArticleID] = count{} // no key and no longer in the data set: back from 0
			}
		}
		return casOps(r.Items, counts, +1), nil
	})
}

// Available returns an article's available count; false for an unknown article.
func (inv *Inventory) Available(ctx context.Context, articleID string) (int, bool, error) {
	counts, err := inv.counts(ctx, []string{articleID})
	if err != nil {
		return 0, false, err
	}
	c, ok := counts[articleID]
	return c.n, ok, nil
}

func (inv *Inventory) getStock(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("article_id")
	if !chassis.ValidKeySegment(id, 64) {
		chassis.WriteError(w, http.StatusNotFound, "no article "+strconv.Quote(id))
		return
	}
	n, ok, err := inv.Available(r.Context(), id)
	switch {
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, "reading the stock: "+err.Error())
	case !ok:
		chassis.WriteError(w, http.StatusNotFound, "no article "+strconv.Quote(id))
	default:
		chassis.WriteJSON(w, http.StatusOK, Stock{ArticleID: id, Available: n})
	}
}

// keyLocks are mutexes by key, for queueing an instance's changes of one article.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*lockEntry
}

type lockEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks the keys, in sorted order (no deadlock between two callers), and returns
// the function that unlocks them. Entries are dropped when nobody holds or waits.
func (k *keyLocks) lock(keys []string) (unlock func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	held := make([]*lockEntry, 0, len(keys))
	for _, key := range keys {
		k.mu.Lock()
		if k.m == nil {
			k.m = map[string]*lockEntry{}
		}
		e := k.m[key]
		if e == nil {
			e = &lockEntry{}
			k.m[key] = e
		}
		e.refs++
		k.mu.Unlock()
		e.mu.Lock()
		held = append(held, e)
	}
	return func() {
		for i, e := range held {
			e.mu.Unlock()
			k.mu.Lock()
			if e.refs--; e.refs == 0 {
				delete(k.m, keys[i])
			}
			k.mu.Unlock()
		}
	}
}

var _ twopc.Participant = (*Inventory)(nil)

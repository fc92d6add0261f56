// Package cartsvc is the shop's cart service (examples/shop/README.md):
//
//	GET    /cart                     {"items":[{"article_id","name","price_cents","qty"}],"total_cents"}
//	POST   /cart/items               {"article_id","qty"} -> the cart (qty added; name and price from the catalog)
//	PUT    /cart/items/{article_id}  {"qty"} -> the cart (0 removes)
//	DELETE /cart                     -> the empty cart
//
// # Who the user is
//
// The user is the X-Wolke-Identity header, and nothing else: the service does not
// check tokens itself. It must therefore only be reachable through the gateway,
// whose JWT policy on the cart's route verifies the token, puts its subject in the
// header and removes every copy of the header the client sent (internal/authn), or
// from other services of the shop (orders) acting for a user. Never expose its port
// directly. Without the header the answer is 401.
//
// # Storage
//
// A cart is one KV key, shop/carts/<user>, holding {"items":[...]}; an empty cart is
// no key. Every change reads the cart, changes it and writes it back with a CAS on
// the index it read, and starts over when another change came in between, so two
// instances adding to one cart at the same time lose nothing. Name and price are
// the catalog's at the time the article was added (or added again).
//
// # Checkout
//
// GET /cart answers with ETag: "<index>", the KV index of the cart it shows ("0":
// none). DELETE /cart with If-Match: "<index>" empties the cart only if it is still
// that one (412 otherwise), so that a checkout empties exactly the cart it charged
// for and not an article added meanwhile.
package cartsvc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Name is the service's name in the catalog.
const Name = "cart"

// KeyPrefix is where the carts are in the KV store: KeyPrefix + user.
const KeyPrefix = "shop/carts/"

// IdentityHeader names the user; the gateway sets it.
const IdentityHeader = "X-Wolke-Identity"

// Limits of a cart.
const (
	MaxQty   = 99 // of one article
	MaxItems = 50 // different articles
)

// Service returns the cart service, for chassis.Main (or chassis.Run in a test).
// It calls the catalog (http://catalog/articles/{id}) when an article is added.
func Service() chassis.Service {
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.path=/api/cart"},
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			h := &handler{store: &store{kv: in.Consul().KV()}, client: in.Client()}
			return h.routes(), nil
		},
	}
}

type handler struct {
	store  *store
	client *http.Client
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cart", h.withUser(h.get))
	mux.HandleFunc("DELETE /cart", h.withUser(h.clear))
	mux.HandleFunc("POST /cart/items", h.withUser(h.add))
	mux.HandleFunc("PUT /cart/items/{article_id}", h.withUser(h.set))
	mux.HandleFunc("/", chassis.NotFound)
	return mux
}

// withUser passes the user named by the identity header, or answers 401.
func (h *handler) withUser(fn func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get(IdentityHeader)
		if user == "" {
			chassis.WriteError(w, http.StatusUnauthorized, "not signed in (no "+IdentityHeader+")")
			return
		}
		if !validID(user, 128) {
			chassis.WriteError(w, http.StatusUnauthorized, "invalid "+IdentityHeader)
			return
		}
		fn(w, r, user)
	}
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, user string) {
	c, index, err := h.store.get(r.Context(), user)
	if err != nil {
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(index, 10)))
	writeCart(w, c)
}

func (h *handler) clear(w http.ResponseWriter, r *http.Request, user string) {
	var index *uint64
	if m := r.Header.Get("If-Match"); m != "" {
		s, err := strconv.Unquote(strings.TrimPrefix(m, "W/"))
		n, err2 := strconv.ParseUint(s, 10, 64)
		if err != nil || err2 != nil {
			chassis.WriteError(w, http.StatusBadRequest, `If-Match: want an ETag of GET /cart, like "42"`)
			return
		}
		index = &n
	}
	switch err := h.store.clear(r.Context(), user, index); {
	case errors.Is(err, errChanged):
		chassis.WriteError(w, http.StatusPreconditionFailed, err.Error())
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeCart(w, cart{})
	}
}

func (h *handler) add(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		ArticleID string `json:"article_id"`
		Qty       int    `json:"qty"`
	}
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Qty == 0 {
		req.Qty = 1
	}
	if !validID(req.ArticleID, 64) {
		chassis.WriteError(w, http.StatusBadRequest, "article_id: missing or invalid")
		return
	}
	if req.Qty < 1 || req.Qty > MaxQty {
		chassis.WriteError(w, http.StatusBadRequest, fmt.Sprintf("qty: want 1 to %d", MaxQty))
		return
	}
	a, status, err := h.article(r.Context(), req.ArticleID)
	if err != nil {
		chassis.WriteError(w, status, err.Error())
		return
	}
	c, err := h.store.update(r.Context(), user, func(c *cart) error {
		if i := c.find(a.ID); i >= 0 {
			if c.Items[i].Qty+req.Qty > MaxQty {
				return &requestError{fmt.Sprintf("qty: at most %d of one article", MaxQty)}
			}
			c.Items[i] = item{ArticleID: a.ID, Name: a.Name, PriceCents: a.PriceCents, Qty: c.Items[i].Qty + req.Qty}
			return nil
		}
		if len(c.Items) >= MaxItems {
			return &requestError{fmt.Sprintf("at most %d different articles in a cart", MaxItems)}
		}
		c.Items = append(c.Items, item{ArticleID: a.ID, Name: a.Name, PriceCents: a.PriceCents, Qty: req.Qty})
		return nil
	})
	h.answerUpdate(w, c, err)
}

func (h *handler) set(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("article_id")
	var req struct {
		Qty *int `json:"qty"`
	}
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !validID(id, 64) {
		chassis.WriteError(w, http.StatusBadRequest, "article_id: invalid")
		return
	}
	if req.Qty == nil || *req.Qty < 0 || *req.Qty > MaxQty {
		chassis.WriteError(w, http.StatusBadRequest, fmt.Sprintf("qty: want 0 to %d", MaxQty))
		return
	}
	qty := *req.Qty
	// The catalog is asked only when the article is not in the cart yet, at most once.
	var fetched *shopdata.Article
	c, err := h.store.update(r.Context(), user, func(c *cart) error {
		i := c.find(id)
		switch {
		case qty == 0:
			if i >= 0 {
				c.Items = append(c.Items[:i], c.Items[i+1:]...)
			}
		case i >= 0:
			c.Items[i].Qty = qty
		default:
			if len(c.Items) >= MaxItems {
				return &requestError{fmt.Sprintf("at most %d different articles in a cart", MaxItems)}
			}
			if fetched == nil {
				a, status, err := h.article(r.Context(), id)
				if err != nil {
					return &upstreamError{status, err}
				}
				fetched = &a
			}
			c.Items = append(c.Items, item{ArticleID: fetched.ID, Name: fetched.Name, PriceCents: fetched.PriceCents, Qty: qty})
		}
		return nil
	})
	h.answerUpdate(w, c, err)
}

func (h *handler) answerUpdate(w http.ResponseWriter, c cart, err error) {
	var re *requestError
	var ue *upstreamError
	switch {
	case errors.As(err, &re):
		chassis.WriteError(w, http.StatusBadRequest, re.msg)
	case errors.As(err, &ue):
		chassis.WriteError(w, ue.status, ue.err.Error())
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeCart(w, c)
	}
}

// article asks the catalog for an article; on failure the status to answer with
// (404 for an unknown article, else 502).
func (h *handler) article(ctx context.Context, id string) (shopdata.Article, int, error) {
	var a shopdata.Article
	err := chassis.GetJSON(ctx, h.client, "http://catalog/articles/"+url.PathEscape(id), &a)
	if re := (*chassis.ResponseError)(nil); errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return a, http.StatusNotFound, fmt.Errorf("no article %q", id)
	}
	if err != nil {
		return a, http.StatusBadGateway, fmt.Errorf("catalog: %v", err)
	}
	return a, 0, nil
}

// requestError is a change the cart's state does not allow: 400.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

// upstreamError is a failed catalog lookup, with the status to answer.
type upstreamError struct {
	status int
	err    error
}

func (e *upstreamError) Error() string { return e.err.Error() }

// validID accepts the IDs of users and articles: 1 to max letters, digits, '-',
// '_', '.' and '@' (no '/': an ID names a KV key).
func validID(s string, max int) bool {
	if s == "" || len(s) > max || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@') {
			return false
		}
	}
	return true
}

func writeCart(w http.ResponseWriter, c cart) {
	if c.Items == nil {
		c.Items = []item{}
	}
	total := 0
	for _, it := range c.Items {
		total += it.PriceCents * it.Qty
	}
	chassis.WriteJSON(w, http.StatusOK, struct {
		Items      []item `json:"items"`
		TotalCents int    `json:"total_cents"`
	}{c.Items, total})
}

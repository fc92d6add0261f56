package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGateway plays the gateway with the shop's APIs behind it, per the contract in
// examples/shop/README.md: canned catalog data, accounts, carts and orders in
// memory, and switches for the failures the storefront must handle.
type fakeGateway struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	recs     string               // ok, fail (500), breaker (503 from the gateway), slow (2 s)
	checkout string               // ok, out-of-stock, declined
	signin   string               // ok, rate-limited
	users    map[string]*fakeUser // by email
	tokens   map[string]string    // token → user ID
	carts    map[string][]Item    // by user ID
	orders   map[string][]Order   // by user ID, oldest first
	seen     []seenRequest
}

type fakeUser struct {
	ID, Name, Email, Password string
}

// seenRequest is a request the fake received.
type seenRequest struct {
	Method, Path, Auth, XFF string
}

var (
	fakeDepts = []Department{
		{ID: "kitchen", Name: "Kitchen", Categories: []Category{{ID: "pots", Name: "Pots", Count: 30}, {ID: "knives", Name: "Knives", Count: 3}}},
		{ID: "garden", Name: "Garden", Categories: []Category{{ID: "lamps", Name: "Lamps", Count: 2}}},
	}
	fakeArticles = func() []Article {
		var out []Article
		for i := 1; i <= 30; i++ {
			out = append(out, Article{ID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("Steel pot %d", i), Department: "kitchen",
				Category: "pots", PriceCents: int64(1000 + i), Description: "A pot.", StockHint: "in stock"})
		}
		for i := 1; i <= 3; i++ {
			out = append(out, Article{ID: fmt.Sprintf("k%d", i), Name: fmt.Sprintf("Chef knife %d", i), Department: "kitchen",
				Category: "knives", PriceCents: 4999, Description: "Sharp <b>very</b>.", StockHint: "only 2 left"})
		}
		out = append(out,
			Article{ID: "l1", Name: "Solar lamp", Department: "garden", Category: "lamps", PriceCents: 1999, Description: "Shines."},
			Article{ID: "l2", Name: "Garden lamp", Department: "garden", Category: "lamps", PriceCents: 2999, Description: "Shines more."})
		return out
	}()
)

func findArticle(id string) (Article, bool) {
	for _, a := range fakeArticles {
		if a.ID == id {
			return a, true
		}
	}
	return Article{}, false
}

func newFakeGateway(t testing.TB) *fakeGateway {
	f := &fakeGateway{t: t, recs: "ok", checkout: "ok", signin: "ok",
		users: map[string]*fakeUser{}, tokens: map[string]string{}, carts: map[string][]Item{}, orders: map[string][]Order{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/catalog/departments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, fakeDepts)
	})
	mux.HandleFunc("GET /api/catalog/articles", f.articles)
	mux.HandleFunc("GET /api/catalog/articles/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := findArticle(r.PathValue("id"))
		if !ok {
			writeJSON(w, 404, map[string]string{"error": "no such article"})
			return
		}
		writeJSON(w, 200, a)
	})
	mux.HandleFunc("GET /api/recommendations/recommendations", f.recommendations)
	mux.HandleFunc("POST /api/accounts/register", f.register)
	mux.HandleFunc("POST /api/accounts/signin", f.signinHandler)
	mux.HandleFunc("GET /api/cart/cart", f.auth(func(w http.ResponseWriter, r *http.Request, user string) {
		writeJSON(w, 200, f.cartOf(user))
	}))
	mux.HandleFunc("POST /api/cart/cart/items", f.auth(f.addItem))
	mux.HandleFunc("PUT /api/cart/cart/items/{id}", f.auth(f.setItem))
	mux.HandleFunc("POST /api/orders/checkout", f.auth(f.checkoutHandler))
	mux.HandleFunc("GET /api/orders/orders", f.auth(func(w http.ResponseWriter, r *http.Request, user string) {
		f.mu.Lock()
		list := slices.Clone(f.orders[user])
		f.mu.Unlock()
		slices.Reverse(list)
		writeJSON(w, 200, list)
	}))
	mux.HandleFunc("GET /api/orders/orders/{id}", f.auth(func(w http.ResponseWriter, r *http.Request, user string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, o := range f.orders[user] {
			if o.ID == r.PathValue("id") {
				writeJSON(w, 200, o)
				return
			}
		}
		writeJSON(w, 404, map[string]string{"error": "no such order"})
	}))
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Forwarded-For")})
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGateway) URL() string { return f.srv.URL }

// set changes a switch under the lock.
func (f *fakeGateway) set(fn func(f *fakeGateway)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// requests returns the requests received for paths starting with prefix.
func (f *fakeGateway) requests(prefix string) []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []seenRequest
	for _, s := range f.seen {
		if strings.HasPrefix(s.Path, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeGateway) articles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	per, _ := strconv.Atoi(q.Get("per_page"))
	page, per = max(page, 1), max(per, 1)
	var match []Article
	for _, a := range fakeArticles {
		if d := q.Get("department"); d != "" && a.Department != d {
			continue
		}
		if c := q.Get("category"); c != "" && a.Category != c {
			continue
		}
		if text := q.Get("q"); text != "" {
			ok := true
			for _, word := range strings.Fields(strings.ToLower(text)) {
				ok = ok && strings.Contains(strings.ToLower(a.Name), word)
			}
			if !ok {
				continue
			}
		}
		match = append(match, a)
	}
	lo, hi := min((page-1)*per, len(match)), min(page*per, len(match))
	writeJSON(w, 200, map[string]any{"total": len(match), "page": page, "per_page": per, "articles": match[lo:hi]})
}

func (f *fakeGateway) recommendations(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.recs
	f.mu.Unlock()
	switch mode {
	case "fail":
		writeJSON(w, 500, map[string]string{"error": "recommendations failed on demand"})
		return
	case "breaker":
		w.Header().Set("X-Wolke-Rejected-By", "breaker")
		w.Header().Set("Retry-After", "5")
		writeJSON(w, 503, map[string]string{"error": "circuit breaker open"})
		return
	case "slow":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	self, _ := findArticle(r.URL.Query().Get("article"))
	var out []Article
	for _, a := range fakeArticles {
		if a.Category == self.Category && len(out) < 5 {
			out = append(out, a) // the article itself included: the storefront leaves it out
		}
	}
	writeJSON(w, 200, map[string]any{"articles": out})
}

// fakeToken is a JWT-shaped token with the claims the storefront reads (the
// signature is not checked by the storefront; the gateway would check it).
func fakeToken(sub, name, email string, exp time.Time) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(map[string]any{"sub": sub, "name": name, "email": email, "exp": exp.Unix(),
		"iss": "wolke-shop", "aud": "shop", "role": "customer"})
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"k1"}`)) + "." + enc.EncodeToString(payload) + ".c2ln"
}

func (f *fakeGateway) register(w http.ResponseWriter, r *http.Request) {
	var in struct{ Email, Name, Password string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	if !strings.Contains(in.Email, "@") {
		writeJSON(w, 400, map[string]string{"error": "bad email"})
		return
	}
	if len(in.Password) < 8 {
		writeJSON(w, 400, map[string]string{"error": "password shorter than 8 characters"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users[in.Email] != nil {
		writeJSON(w, 409, map[string]string{"error": "email taken"})
		return
	}
	u := &fakeUser{ID: fmt.Sprintf("u%d", len(f.users)+1), Name: in.Name, Email: in.Email, Password: in.Password}
	f.users[in.Email] = u
	writeJSON(w, 201, User{ID: u.ID, Email: u.Email, Name: u.Name})
}

func (f *fakeGateway) signinHandler(w http.ResponseWriter, r *http.Request) {
	var in struct{ Email, Password string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signin == "rate-limited" {
		w.Header().Set("X-Wolke-Rejected-By", "rate-limit")
		w.Header().Set("Retry-After", "1")
		writeJSON(w, 429, map[string]string{"error": "rate limit exceeded"})
		return
	}
	u := f.users[in.Email]
	if u == nil || u.Password != in.Password {
		writeJSON(w, 401, map[string]string{"error": "wrong email or password"})
		return
	}
	exp := time.Now().Add(time.Hour)
	tok := fakeToken(u.ID, u.Name, u.Email, exp)
	f.tokens[tok] = u.ID
	writeJSON(w, 200, map[string]any{"token": tok, "expires_at": exp.Format(time.RFC3339),
		"user": User{ID: u.ID, Email: u.Email, Name: u.Name}})
}

// auth plays the gateway's JWT policy: a known bearer token, else 401.
func (f *fakeGateway) auth(h func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		user := f.tokens[tok]
		f.mu.Unlock()
		if !ok || user == "" {
			w.Header().Set("X-Wolke-Rejected-By", "auth")
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeJSON(w, 401, map[string]string{"error": "invalid token"})
			return
		}
		h(w, r, user)
	}
}

func (f *fakeGateway) cartOf(user string) Cart {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Cart{Items: slices.Clone(f.carts[user])}
	if c.Items == nil {
		c.Items = []Item{}
	}
	for _, it := range c.Items {
		c.TotalCents += it.SubtotalCents()
	}
	return c
}

func (f *fakeGateway) addItem(w http.ResponseWriter, r *http.Request, user string) {
	var in struct {
		ArticleID string `json:"article_id"`
		Qty       int    `json:"qty"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Qty < 1 {
		writeJSON(w, 400, map[string]string{"error": "bad item"})
		return
	}
	a, ok := findArticle(in.ArticleID)
	if !ok {
		writeJSON(w, 400, map[string]string{"error": "no such article"})
		return
	}
	f.mu.Lock()
	items := f.carts[user]
	i := slices.IndexFunc(items, func(it Item) bool { return it.ArticleID == a.ID })
	if i < 0 {
		items = append(items, Item{ArticleID: a.ID, Name: a.Name, PriceCents: a.PriceCents})
		i = len(items) - 1
	}
	items[i].Qty += in.Qty
	f.carts[user] = items
	f.mu.Unlock()
	writeJSON(w, 200, f.cartOf(user))
}

func (f *fakeGateway) setItem(w http.ResponseWriter, r *http.Request, user string) {
	var in struct {
		Qty int `json:"qty"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Qty < 0 {
		writeJSON(w, 400, map[string]string{"error": "bad quantity"})
		return
	}
	f.mu.Lock()
	items := f.carts[user]
	if i := slices.IndexFunc(items, func(it Item) bool { return it.ArticleID == r.PathValue("id") }); i >= 0 {
		if in.Qty == 0 {
			items = slices.Delete(items, i, i+1)
		} else {
			items[i].Qty = in.Qty
		}
	}
	f.carts[user] = items
	f.mu.Unlock()
	writeJSON(w, 200, f.cartOf(user))
}

func (f *fakeGateway) checkoutHandler(w http.ResponseWriter, r *http.Request, user string) {
	cart := f.cartOf(user)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(cart.Items) == 0:
		writeJSON(w, 400, map[string]string{"error": "the cart is empty"})
	case f.checkout == "out-of-stock":
		writeJSON(w, 409, map[string]string{"error": "out of stock", "article_id": cart.Items[len(cart.Items)-1].ArticleID})
	case f.checkout == "declined":
		writeJSON(w, 402, map[string]string{"error": "payment declined"})
	default:
		o := Order{ID: fmt.Sprintf("o%d", len(f.orders[user])+1), User: user, Items: cart.Items,
			TotalCents: cart.TotalCents, Status: "confirmed", Created: flexTime{time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)}}
		f.orders[user] = append(f.orders[user], o)
		f.carts[user] = nil
		writeJSON(w, 201, o)
	}
}

// MarshalJSON writes the time as RFC 3339, as the orders service would.
func (t flexTime) MarshalJSON() ([]byte, error) { return json.Marshal(t.Time.Format(time.RFC3339)) }

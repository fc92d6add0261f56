package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The storefront reaches every API through the gateway, like a browser would, so
// that the gateway's policies (JWT on cart and orders, the sign-in rate limit, the
// catalog cache, the recommendations breaker) apply to what a shopper causes.

// maxAPIBody bounds an API answer the storefront reads (an article list of 100
// articles is about 30 KiB).
const maxAPIBody = 4 << 20

// gateway calls the shop's APIs at the gateway's base URL.
type gateway struct {
	base   string // GATEWAY_URL without the trailing slash
	client *http.Client
}

// caller is who an API call is made for: the shopper's token (sent only to the
// routes that need it) and address.
type caller struct {
	token string // the JWT from the session cookie; "" when signed out
	xff   string // the client's X-Forwarded-For (or its address)
}

// apiError is a non-2xx answer of an API (or of the gateway in front of it).
type apiError struct {
	Method, Path string
	Status       int
	Msg          string // the answer's "error"
	ArticleID    string // the answer's "article_id" (409 at checkout)
	RejectedBy   string // X-Wolke-Rejected-By: the gateway refused it itself
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: %d", e.Method, e.Path, e.Status)
	if e.RejectedBy != "" {
		s += " (rejected by the gateway: " + e.RejectedBy + ")"
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// statusOf returns the HTTP status of an API error, or 0 for a call that got no
// answer (transport error, timeout).
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// call sends one request: in (unless nil) as the JSON body, a 2xx JSON answer
// decoded into out (unless nil). auth says whether the route needs the shopper's
// token: it goes only to cart, orders, and nowhere else, so that catalog answers
// stay shareable in the gateway's cache (which never answers requests that carry
// Authorization).
func (g *gateway) call(ctx context.Context, who caller, method, path string, auth bool, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, body)
	if err != nil {
		return err
	}
	h := req.Header
	h["Accept"] = []string{"application/json"}
	if in != nil {
		h["Content-Type"] = []string{"application/json"}
	}
	if auth && who.token != "" {
		h["Authorization"] = []string{"Bearer " + who.token}
	}
	if who.xff != "" {
		h["X-Forwarded-For"] = []string{who.xff}
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	r := io.LimitReader(resp.Body, maxAPIBody)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &apiError{Method: method, Path: path, Status: resp.StatusCode,
			RejectedBy: resp.Header.Get("X-Wolke-Rejected-By")}
		var e struct {
			Error     string `json:"error"`
			ArticleID string `json:"article_id"`
		}
		b, _ := io.ReadAll(io.LimitReader(r, 4096))
		if json.Unmarshal(b, &e) == nil {
			ae.Msg, ae.ArticleID = e.Error, e.ArticleID
		}
		return ae
	}
	if out != nil {
		if err := json.NewDecoder(r).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10)) // so that the connection is reused
	return nil
}

// withTimeout runs fn under ctx bounded by d.
func withTimeout(ctx context.Context, d time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return fn(ctx)
}

// ---- catalog ----

// Article is the catalog's article.
type Article struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Department  string    `json:"department"`
	Category    string    `json:"category"`
	PriceCents  int64     `json:"price_cents"`
	Description string    `json:"description"`
	StockHint   stockHint `json:"stock_hint"`
}

// stockHint is the catalog's stock_hint: a text, or a number of pieces.
type stockHint string

func (s *stockHint) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = stockHint(v)
		return nil
	}
	if string(b) == "null" {
		*s = ""
		return nil
	}
	n, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("stock_hint: %s is neither a text nor a number", b)
	}
	switch {
	case n <= 0:
		*s = "out of stock"
	case n < 10:
		*s = stockHint(fmt.Sprintf("only %d left", int(n)))
	default:
		*s = "in stock"
	}
	return nil
}

// Department is a department with its categories.
type Department struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Categories []Category `json:"categories"`
}

// Category is a category of a department.
type Category struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// ArticleList is a page of articles.
type ArticleList struct {
	Total    int       `json:"total"`
	Page     int       `json:"page"`
	PerPage  int       `json:"per_page"`
	Articles []Article `json:"articles"`
}

func (g *gateway) departments(ctx context.Context, who caller) ([]Department, error) {
	var out []Department
	err := g.call(ctx, who, http.MethodGet, "/api/catalog/departments", false, nil, &out)
	return out, err
}

// articleQuery selects a page of articles.
type articleQuery struct {
	Department, Category, Q string
	Page, PerPage           int
}

func (g *gateway) articles(ctx context.Context, who caller, q articleQuery) (ArticleList, error) {
	v := make(url.Values, 5)
	if q.Department != "" {
		v.Set("department", q.Department)
	}
	if q.Category != "" {
		v.Set("category", q.Category)
	}
	if q.Q != "" {
		v.Set("q", q.Q)
	}
	v.Set("page", strconv.Itoa(max(q.Page, 1)))
	v.Set("per_page", strconv.Itoa(q.PerPage))
	var out ArticleList
	err := g.call(ctx, who, http.MethodGet, "/api/catalog/articles?"+v.Encode(), false, nil, &out)
	return out, err
}

func (g *gateway) article(ctx context.Context, who caller, id string) (Article, error) {
	var out Article
	err := g.call(ctx, who, http.MethodGet, "/api/catalog/articles/"+url.PathEscape(id), false, nil, &out)
	return out, err
}

// ---- recommendations ----

func (g *gateway) recommendations(ctx context.Context, who caller, articleID string) ([]Article, error) {
	var out struct {
		Articles []Article `json:"articles"`
	}
	err := g.call(ctx, who, http.MethodGet, "/api/recommendations/recommendations?article="+url.QueryEscape(articleID), false, nil, &out)
	return out.Articles, err
}

// ---- accounts ----

// User is an account as accounts returns it.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// signin is the answer of accounts' /signin.
type signin struct {
	Token string `json:"token"`
	User  User   `json:"user"`
}

func (g *gateway) register(ctx context.Context, who caller, name, email, password string) (User, error) {
	var out User
	in := map[string]string{"name": name, "email": email, "password": password}
	err := g.call(ctx, who, http.MethodPost, "/api/accounts/register", false, in, &out)
	return out, err
}

func (g *gateway) signin(ctx context.Context, who caller, email, password string) (signin, error) {
	var out signin
	in := map[string]string{"email": email, "password": password}
	err := g.call(ctx, who, http.MethodPost, "/api/accounts/signin", false, in, &out)
	if err == nil && out.Token == "" {
		err = errors.New("POST /api/accounts/signin: no token in the answer")
	}
	return out, err
}

// ---- cart ----

// Item is a line of a cart or an order.
type Item struct {
	ArticleID  string `json:"article_id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Qty        int    `json:"qty"`
}

// SubtotalCents is the line's price times its quantity.
func (it Item) SubtotalCents() int64 { return it.PriceCents * int64(it.Qty) }

// Cart is a shopper's cart.
type Cart struct {
	Items      []Item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// Count is the number of pieces in the cart.
func (c *Cart) Count() int {
	n := 0
	for _, it := range c.Items {
		n += it.Qty
	}
	return n
}

func (g *gateway) cart(ctx context.Context, who caller) (Cart, error) {
	var out Cart
	err := g.call(ctx, who, http.MethodGet, "/api/cart/cart", true, nil, &out)
	return out, err
}

func (g *gateway) addToCart(ctx context.Context, who caller, articleID string, qty int) (Cart, error) {
	var out Cart
	in := struct {
		ArticleID string `json:"article_id"`
		Qty       int    `json:"qty"`
	}{articleID, qty}
	err := g.call(ctx, who, http.MethodPost, "/api/cart/cart/items", true, in, &out)
	return out, err
}

func (g *gateway) setQty(ctx context.Context, who caller, articleID string, qty int) (Cart, error) {
	var out Cart
	in := struct {
		Qty int `json:"qty"`
	}{qty}
	err := g.call(ctx, who, http.MethodPut, "/api/cart/cart/items/"+url.PathEscape(articleID), true, in, &out)
	return out, err
}

// ---- orders ----

// Order is a placed order.
type Order struct {
	ID         string   `json:"id"`
	User       string   `json:"user"`
	Items      []Item   `json:"items"`
	TotalCents int64    `json:"total_cents"`
	Status     string   `json:"status"`
	Created    flexTime `json:"created"`
}

// flexTime reads a time as RFC 3339 text or as Unix seconds (or milliseconds).
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null" || s == `""`:
		t.Time = time.Time{}
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		p, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fmt.Errorf("created: %w", err)
		}
		t.Time = p
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("created: %s is neither a time nor a number", s)
		}
		if n > 1e12 {
			t.Time = time.UnixMilli(n)
		} else {
			t.Time = time.Unix(n, 0)
		}
	}
	return nil
}

func (g *gateway) checkout(ctx context.Context, who caller) (Order, error) {
	var out Order
	err := g.call(ctx, who, http.MethodPost, "/api/orders/checkout", true, nil, &out)
	return out, err
}

func (g *gateway) orders(ctx context.Context, who caller) ([]Order, error) {
	var out []Order
	err := g.call(ctx, who, http.MethodGet, "/api/orders/orders", true, nil, &out)
	return out, err
}

func (g *gateway) order(ctx context.Context, who caller, id string) (Order, error) {
	var out Order
	err := g.call(ctx, who, http.MethodGet, "/api/orders/orders/"+url.PathEscape(id), true, nil, &out)
	return out, err
}

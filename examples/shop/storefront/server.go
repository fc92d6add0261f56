package main

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Config is the storefront's static configuration, from the environment.
type Config struct {
	// GatewayURL is where the storefront reaches the APIs: the gateway, as a browser
	// would (http://127.0.0.1:8080).
	GatewayURL string `env:"GATEWAY_URL" required:"true" help:"the gateway's URL, through which every API is called"`
	// APITimeout bounds each API call of a page (catalog, cart, accounts, orders).
	APITimeout time.Duration `env:"API_TIMEOUT" default:"2s" help:"budget of each API call of a page"`
	// CheckoutTimeout bounds the checkout (a two-phase commit behind orders).
	CheckoutTimeout time.Duration `env:"CHECKOUT_TIMEOUT" default:"10s" help:"budget of the checkout call"`
}

// Validate checks the gateway URL and the timeouts.
func (c *Config) Validate() error {
	u, err := url.Parse(c.GatewayURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return &chassis.VarError{Var: "GATEWAY_URL", Value: c.GatewayURL, Err: errors.New("not an http(s) URL of a host (like http://127.0.0.1:8080)")}
	}
	if h := u.Hostname(); u.Port() == "" && h != "localhost" && !strings.ContainsAny(h, ".:") {
		// The chassis client would take a bare name for a service in the catalog and
		// put its breaker over every API at once.
		return &chassis.VarError{Var: "GATEWAY_URL", Value: c.GatewayURL, Err: errors.New("name the gateway with a port or a domain (http://gateway:8080), not a bare service name")}
	}
	if c.APITimeout <= 0 {
		return &chassis.VarError{Var: "API_TIMEOUT", Value: c.APITimeout.String(), Err: errors.New("must be positive")}
	}
	if c.CheckoutTimeout <= 0 {
		return &chassis.VarError{Var: "CHECKOUT_TIMEOUT", Value: c.CheckoutTimeout.String(), Err: errors.New("must be positive")}
	}
	return nil
}

// Dynamic configuration keys, under config/storefront/.
const (
	keyBanner      = "sale_banner"             // text on every page; empty: none
	keyShowRecs    = "show_recommendations"    // true/false
	keyRecsTimeout = "recommendations_timeout" // the recommendations' budget on the article page
	keyPageMaxAge  = "page_max_age"            // how long the gateway may cache signed-out catalog pages
)

// Page sizes.
const (
	perPage     = 24 // articles per department or search page
	featuredN   = 8  // articles on the home page
	maxRecs     = 4
	maxPage     = 1000
	maxQueryLen = 200
	// degradedMaxAge caps the caching of a page rendered without a part that
	// failed, so that the part shows again soon after it recovers.
	degradedMaxAge = 5 * time.Second
)

// server is the storefront's HTTP handler.
type server struct {
	cfg   Config
	gw    *gateway
	log   *slog.Logger
	pages *renderer
	depts deptCache

	banner      *chassis.Value[string]
	showRecs    *chassis.Value[bool]
	recsTimeout *chassis.Value[time.Duration]
	pageMaxAge  *chassis.Value[time.Duration]

	// recommendations on the article page, by outcome
	recsShown, recsOff, recsTimedOut, recsFailed prometheus.Counter
}

// newServer builds the storefront's handler for the instance.
//
// API calls use the instance's client (ClientWith): the gateway's URL has a port
// or a dot, so the client sends requests to it as they are, without discovery,
// retries or breakers (the gateway does those), but with the trace context and the
// request ID, so that one trace runs from the browser's request through the
// gateway to the service; and over a pool tuned for one busy host (256 idle
// connections per host, where net/http's default of 2 would churn connections
// under load). The client's timeout bounds each attempt's wait for the response
// header; each call also runs under a context with its own budget.
func newServer(in *chassis.Instance, cfg Config) (*server, error) {
	pages, err := newRenderer()
	if err != nil {
		return nil, err
	}
	d := in.Dynamic()
	s := &server{
		cfg:   cfg,
		gw:    &gateway{base: strings.TrimSuffix(cfg.GatewayURL, "/"), client: in.ClientWith(chassis.ClientOptions{Timeout: max(cfg.APITimeout, cfg.CheckoutTimeout), MaxAttempts: 1})},
		log:   in.Logger(),
		pages: pages,

		banner:      d.String(keyBanner, ""),
		showRecs:    d.Bool(keyShowRecs, true),
		recsTimeout: d.Duration(keyRecsTimeout, 300*time.Millisecond, chassis.Between(10*time.Millisecond, 10*time.Second)),
		pageMaxAge:  d.Duration(keyPageMaxAge, 30*time.Second, chassis.Between(time.Duration(0), time.Hour)),
	}
	s.depts.ttl = 30 * time.Second
	recs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storefront_recommendations_total",
		Help: "Article pages by what became of their recommendations: shown, off (switched off), timeout, error.",
	}, []string{"outcome"})
	if err := in.Metrics().Register(recs); err != nil {
		return nil, err
	}
	s.recsShown, s.recsOff = recs.WithLabelValues("shown"), recs.WithLabelValues("off")
	s.recsTimedOut, s.recsFailed = recs.WithLabelValues("timeout"), recs.WithLabelValues("error")
	return s, nil
}

// routes returns the storefront's ServeMux (its patterns are the chassis's route
// labels).
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /departments/{id}", s.department)
	mux.HandleFunc("GET /articles/{id}", s.article)
	mux.HandleFunc("GET /search", s.search)
	mux.HandleFunc("GET /signin", s.signinForm)
	mux.HandleFunc("POST /signin", s.signin)
	mux.HandleFunc("GET /register", s.registerForm)
	mux.HandleFunc("POST /register", s.register)
	mux.HandleFunc("POST /signout", s.signout)
	mux.HandleFunc("GET /cart", s.cart)
	mux.HandleFunc("POST /cart/items", s.addToCart)
	mux.HandleFunc("POST /cart/items/{id}", s.updateItem)
	mux.HandleFunc("POST /cart/items/{id}/remove", s.removeItem)
	mux.HandleFunc("GET /checkout", s.checkoutPage)
	mux.HandleFunc("POST /checkout", s.checkout)
	mux.HandleFunc("GET /orders", s.orderList)
	mux.HandleFunc("GET /orders/{id}", s.order)
	mux.HandleFunc("GET /static/style.css", s.pages.serveCSS)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, s.newSite(w, r, nil, ""), http.StatusNotFound, "Not found", "There is no page at this address.")
	})
	return mux
}

// req is what every handler learns about its request first.
type req struct {
	sess *session // nil: signed out
	who  caller
}

// begin reads the session cookie; a stale one is cleared in the answer.
func (s *server) begin(w http.ResponseWriter, r *http.Request) req {
	sess, stale := sessionOf(r, time.Now())
	if stale {
		clearSession(w, r)
	}
	q := req{sess: sess, who: caller{xff: clientAddr(r)}}
	if sess != nil {
		q.who.token = sess.Token
	}
	return q
}

// newSite fills the layout's data: the banner, the shopper and the navigation.
func (s *server) newSite(w http.ResponseWriter, r *http.Request, sess *session, title string) *site {
	st := &site{Title: title, Banner: s.banner.Get(), User: sess}
	if r.Method == http.MethodGet && r.URL.Path != "/" && r.URL.Path != "/signin" && r.URL.Path != "/register" {
		st.Next = r.URL.RequestURI()
	}
	st.Departments, st.Nav, _ = s.depts.get(r.Context(), func(ctx context.Context) ([]Department, error) {
		var out []Department
		err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
			out, err = s.gw.departments(ctx, caller{xff: clientAddr(r)})
			return err
		})
		return out, err
	})
	return st
}

// cartCount is the cart's piece count, fetched while the page's own data is.
type cartCount struct {
	ch chan cartResult
}

type cartResult struct {
	n   int
	err error
}

// startCart begins fetching the shopper's cart (nothing when signed out).
func (s *server) startCart(ctx context.Context, q req) *cartCount {
	if q.sess == nil {
		return nil
	}
	c := &cartCount{ch: make(chan cartResult, 1)}
	go func() {
		var cart Cart
		err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
			cart, err = s.gw.cart(ctx, q.who)
			return err
		})
		c.ch <- cartResult{cart.Count(), err}
	}()
	return c
}

// finish puts the cart count into the layout. A token the gateway refused (401)
// ends the session: the cookie is cleared and the page shows a signed-out shopper.
// Any other failure only leaves the count out.
func (s *server) finish(w http.ResponseWriter, r *http.Request, st *site, c *cartCount) {
	if c == nil {
		return
	}
	res := <-c.ch
	switch {
	case res.err == nil:
		st.CartCount = res.n
	case statusOf(res.err) == http.StatusUnauthorized:
		clearSession(w, r)
		st.User = nil
	default:
		s.log.WarnContext(r.Context(), "cart count unavailable", "error", res.err)
		st.CartCount = -1
	}
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Heading string
	Message string
}

// fail renders the error page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, st *site, status int, heading, msg string) {
	st.Title = heading
	s.pages.render(w, status, "error", st, errorPage{Status: status, Heading: heading, Message: msg}, noCache)
}

// upstreamFail renders the error page for a failed API call: 404 as not found,
// anything else as the part of the shop being unavailable.
func (s *server) upstreamFail(w http.ResponseWriter, r *http.Request, st *site, what string, err error) {
	if statusOf(err) == http.StatusNotFound {
		s.fail(w, r, st, http.StatusNotFound, "Not found", "There is no "+what+" at this address.")
		return
	}
	if r.Context().Err() == nil { // else the browser left: nothing to report
		s.log.WarnContext(r.Context(), "upstream call failed", "what", what, "error", err)
	}
	s.fail(w, r, st, http.StatusServiceUnavailable, "Temporarily unavailable",
		"The "+what+" cannot be shown right now. Please try again in a moment.")
}

// toSignin sends a signed-out shopper to the sign-in form, to come back to next.
func toSignin(w http.ResponseWriter, r *http.Request, next string) {
	http.Redirect(w, r, "/signin?next="+url.QueryEscape(localPath(next)), http.StatusSeeOther)
}

// pageParam reads ?page= (1 when absent or bad).
func pageParam(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return min(n, maxPage)
}

// deptCache keeps the departments (the navigation of every page) for a while:
// they change with the catalog's data set, not per request. A failed refresh
// keeps serving the old list and is tried again after a second.
type deptCache struct {
	ttl time.Duration

	mu         sync.Mutex
	list       []Department
	nav        template.HTML // navHTML(list)
	expires    time.Time
	refreshing bool
}

// get returns the departments and their navigation: fresh from memory, or
// fetched by one caller while the others keep the old ones.
func (c *deptCache) get(ctx context.Context, fetch func(context.Context) ([]Department, error)) ([]Department, template.HTML, error) {
	now := time.Now()
	c.mu.Lock()
	list, nav := c.list, c.nav
	if now.Before(c.expires) || (c.refreshing && list != nil) {
		c.mu.Unlock()
		return list, nav, nil
	}
	c.refreshing = true
	c.mu.Unlock()

	fresh, err := fetch(ctx)
	var freshNav template.HTML
	if err == nil {
		freshNav = navHTML(fresh)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshing = false
	if err != nil {
		c.expires = now.Add(time.Second)
		if c.list != nil {
			return c.list, c.nav, nil
		}
		return nil, "", err
	}
	c.list, c.nav, c.expires = fresh, freshNav, now.Add(c.ttl)
	return fresh, freshNav, nil
}

// findDept returns the department with the ID (or, failing that, the name).
func findDept(list []Department, id string) *Department {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	for i := range list {
		if strings.EqualFold(list[i].Name, id) {
			return &list[i]
		}
	}
	return nil
}

// findCategory returns d's category with the ID (or, failing that, the name).
func findCategory(d *Department, id string) *Category {
	if d == nil {
		return nil
	}
	for i := range d.Categories {
		if d.Categories[i].ID == id {
			return &d.Categories[i]
		}
	}
	for i := range d.Categories {
		if strings.EqualFold(d.Categories[i].Name, id) {
			return &d.Categories[i]
		}
	}
	return nil
}

// pager is the pagination of an article list.
type pager struct {
	Page, Pages, Total int
	PrevURL, NextURL   string
}

// newPager builds the pagination of list, with links to base + the query plus page.
func newPager(list ArticleList, base string, q url.Values) pager {
	per := list.PerPage
	if per <= 0 {
		per = perPage
	}
	p := pager{Page: max(list.Page, 1), Total: list.Total, Pages: max((list.Total+per-1)/per, 1)}
	link := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		if n > 1 {
			v.Set("page", strconv.Itoa(n))
		} else {
			v.Del("page")
		}
		if e := v.Encode(); e != "" {
			return base + "?" + e
		}
		return base
	}
	if p.Page > 1 {
		p.PrevURL = link(p.Page - 1)
	}
	if p.Page < p.Pages {
		p.NextURL = link(p.Page + 1)
	}
	return p
}

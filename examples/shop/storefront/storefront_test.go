package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// clientIP is the browser's address the tests claim (as the gateway would, in
// X-Forwarded-For).
const clientIP = "203.0.113.7"

// shop is a storefront served in-process (behind the chassis middleware) in front
// of a fake gateway, and a browser with a cookie jar.
type shop struct {
	t          *testing.T
	gw         *fakeGateway
	url        string
	client     *http.Client // follows redirects
	noRedirect *http.Client
}

// xffTransport adds the client's X-Forwarded-For, as the gateway does.
type xffTransport struct{ base http.RoundTripper }

func (x xffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", clientIP)
	return x.base.RoundTrip(r)
}

func newShop(t *testing.T) *shop {
	t.Helper()
	gw := newFakeGateway(t)
	var cfg Config
	svc := service(&cfg)
	env := map[string]string{"GATEWAY_URL": gw.URL(), "ACCESS_LOG": "false", "WOLKE_HTTP_ADDR": "127.0.0.1:1"}
	svc.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	svc.Stdout = io.Discard
	in, err := chassis.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	s, err := newServer(in, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(in.Handler(s.routes()))
	t.Cleanup(ts.Close)
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &shop{
		t: t, gw: gw, url: ts.URL,
		client: &http.Client{Jar: jar, Timeout: 5 * time.Second, Transport: xffTransport{tr}},
		noRedirect: &http.Client{Jar: jar, Timeout: 5 * time.Second, Transport: xffTransport{tr},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// page is an answer of the storefront.
type page struct {
	status int
	header http.Header
	body   string
	url    string // after redirects
}

func (s *shop) do(c *http.Client, method, path string, form url.Values) page {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL.RequestURI()}
}

func (s *shop) get(path string) page { s.t.Helper(); return s.do(s.client, "GET", path, nil) }
func (s *shop) post(path string, form url.Values) page {
	s.t.Helper()
	return s.do(s.client, "POST", path, form)
}

// signIn registers a shopper and signs in through the forms.
func (s *shop) signIn(name, email string) page {
	s.t.Helper()
	p := s.post("/register", url.Values{"name": {name}, "email": {email}, "password": {"correct horse"}, "next": {"/"}})
	if p.status != 200 || !strings.Contains(p.body, `id="user-name"`) {
		s.t.Fatalf("registration and sign-in: %d at %s\n%s", p.status, p.url, p.body)
	}
	return p
}

// expect fails the test unless body has every element.
func (p page) expect(t *testing.T, what string, elems ...string) {
	t.Helper()
	for _, e := range elems {
		if !strings.Contains(p.body, e) {
			t.Errorf("%s: no %s in the page (status %d):\n%s", what, e, p.status, p.body)
		}
	}
}

// expectNot fails the test if body has one of the elements.
func (p page) expectNot(t *testing.T, what string, elems ...string) {
	t.Helper()
	for _, e := range elems {
		if strings.Contains(p.body, e) {
			t.Errorf("%s: unexpected %s in the page", what, e)
		}
	}
}

func (p page) count(elem string) int { return strings.Count(p.body, elem) }

const card = `class="article-card"`

// pub30 is the Cache-Control of a signed-out catalog page by default.
const pub30 = "public, max-age=30, stale-while-revalidate=30, stale-if-error=600"

func TestPagesSignedOut(t *testing.T) {
	s := newShop(t)
	for _, tc := range []struct {
		path   string
		status int
		elems  []string
		not    []string
		cards  int    // article cards, -1: any
		cache  string // Cache-Control
	}{
		{"/", 200, []string{`id="departments"`, `class="department-link" data-department-id="kitchen" href="/departments/kitchen"`,
			`id="featured"`, `id="signin-link"`, `id="register-link"`, `id="search-form"`, `id="departments-nav"`},
			[]string{`id="cart-count"`, `id="sale-banner"`}, featuredN, pub30},
		{"/departments/kitchen", 200, []string{`id="department-name" data-department-id="kitchen"`, `id="categories"`,
			`data-category-id="pots"`, `id="result-count">33 articles`, `id="next-page" rel="next" href="/departments/kitchen?page=2"`,
			`Page 1 of 2`}, []string{`id="prev-page"`}, perPage, pub30},
		{"/departments/kitchen?page=2", 200, []string{`id="prev-page" rel="prev" href="/departments/kitchen"`, `Page 2 of 2`},
			[]string{`id="next-page"`}, 33 - perPage, pub30},
		{"/departments/kitchen?category=knives", 200, []string{`class="category-link active" data-category-id="knives"`,
			`id="category-name" data-category-id="knives"`, `id="result-count">3 articles`}, []string{`class="pagination"`}, 3, pub30},
		{"/articles/k1", 200, []string{`id="article" data-article-id="k1"`, `id="article-name">Chef knife 1<`,
			`id="article-price">€49.99<`, `id="stock-hint">only 2 left<`, `Sharp &lt;b&gt;very&lt;/b&gt;.`,
			`<form id="add-to-cart" action="/cart/items" method="post">`, `name="article_id" value="k1"`,
			`id="recommendations"`, `class="recommendation"`, `href="/departments/kitchen?category=knives">Knives</a>`,
			`href="/signin?next=%2farticles%2fk1"`},
			[]string{`class="article-card" data-article-id="k1"`}, 2, pub30}, // not among its own recommendations
		{"/search?q=LAMP", 200, []string{`id="search-title">Results for “LAMP”`, `id="result-count">2 articles`,
			`id="search-input" type="search" name="q" value="LAMP"`}, nil, 2, pub30},
		{"/search?q=teapot", 200, []string{`id="no-results"`}, nil, 0, pub30},
		{"/search", 200, []string{`id="search-title">Search<`}, nil, 0, pub30},
		{"/signin?next=/cart", 200, []string{`id="signin-form"`, `name="next" value="/cart"`, `id="email"`, `id="password"`, `id="signin-button"`}, nil, 0, "no-store"},
		{"/register", 200, []string{`id="register-form"`, `id="name"`, `id="email"`, `id="password"`, `id="register-button"`}, nil, 0, "no-store"},
		{"/articles/nope", 404, []string{`id="error-page" data-status="404"`}, nil, 0, "no-store"},
		{"/departments/nope", 404, []string{`id="error-page" data-status="404"`}, nil, 0, "no-store"},
		{"/departments/kitchen?category=lamps", 404, []string{`id="error-page"`}, nil, 0, "no-store"},
		{"/no/such/page", 404, []string{`id="error-page"`}, nil, 0, "no-store"},
	} {
		p := s.get(tc.path)
		if p.status != tc.status {
			t.Errorf("GET %s: status %d, want %d\n%s", tc.path, p.status, tc.status, p.body)
			continue
		}
		p.expect(t, tc.path, tc.elems...)
		p.expectNot(t, tc.path, tc.not...)
		if n := p.count(card); tc.cards >= 0 && n != tc.cards {
			t.Errorf("GET %s: %d article cards, want %d", tc.path, n, tc.cards)
		}
		if cc := p.header.Get("Cache-Control"); cc != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, cc, tc.cache)
		}
		if v := p.header.Get("Vary"); v != "Cookie" {
			t.Errorf("GET %s: Vary %q, want Cookie", tc.path, v)
		}
		if ct := p.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", tc.path, ct)
		}
	}

	// The style sheet the pages link to is cached for good: its URL names its content.
	css := regexp.MustCompile(`href="(/static/style\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(s.get("/").body)
	if css == nil {
		t.Fatal("no style sheet link")
	}
	p := s.get(css[1])
	if p.status != 200 || !strings.Contains(p.body, "#sale-banner") || !strings.Contains(p.header.Get("Cache-Control"), "immutable") {
		t.Fatalf("style sheet: %d %v", p.status, p.header)
	}

	// Catalog calls carry no Authorization (so that the gateway may answer them from
	// its cache) and do carry the client's address.
	for _, r := range s.gw.requests("/api/catalog/") {
		if r.Auth != "" || r.XFF != clientIP {
			t.Fatalf("catalog request %+v: want no Authorization and X-Forwarded-For %s", r, clientIP)
		}
	}
}

func TestSignInSetsCookieAndForwardsToken(t *testing.T) {
	s := newShop(t)

	// A wrong password, a taken email, a short password: the form again, with the reason.
	p := s.post("/signin", url.Values{"email": {"ann@example.com"}, "password": {"whatever1"}})
	if p.status != 401 {
		t.Fatalf("sign-in of an unknown shopper: %d", p.status)
	}
	p.expect(t, "failed sign-in", `id="form-error"`, "Wrong email or password", `value="ann@example.com"`)
	p = s.post("/register", url.Values{"name": {"Ann"}, "email": {"ann@example.com"}, "password": {"short"}})
	if p.status != 400 {
		t.Fatalf("registration with a short password: %d", p.status)
	}
	p.expect(t, "bad registration", `id="form-error"`, "Password shorter than 8 characters", `id="register-form"`)

	// Registration signs in: an HttpOnly cookie with the token, and back to next.
	p = s.do(s.noRedirect, "POST", "/register", url.Values{"name": {"Ann"}, "email": {"ann@example.com"},
		"password": {"correct horse"}, "next": {"/articles/l1"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/articles/l1" {
		t.Fatalf("registration: %d to %q", p.status, p.header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.Path != "/" || cookie.SameSite != http.SameSiteLaxMode ||
		cookie.MaxAge < 3500 || strings.Count(cookie.Value, ".") != 2 {
		t.Fatalf("session cookie: %+v", cookie)
	}
	token := cookie.Value

	// Signed in: the shopper's name and cart count, and nothing for shared caches.
	p = s.get("/articles/l1")
	p.expect(t, "signed-in article page", `id="user-name">Ann<`, `id="cart-count">0<`, `id="signout-form"`, `id="orders-link"`)
	p.expectNot(t, "signed-in article page", `id="signin-link"`)
	if cc := p.header.Get("Cache-Control"); cc != "private, no-store" {
		t.Fatalf("signed-in article page: Cache-Control %q", cc)
	}
	// The token went to the cart as a bearer token, with the client's address.
	carts := s.gw.requests("/api/cart/")
	if len(carts) == 0 {
		t.Fatal("no cart request")
	}
	for _, r := range carts {
		if r.Auth != "Bearer "+token || r.XFF != clientIP {
			t.Fatalf("cart request %+v: want the bearer token and X-Forwarded-For %s", r, clientIP)
		}
	}
	for _, r := range s.gw.requests("/api/") {
		if r.Auth != "" && !strings.HasPrefix(r.Path, "/api/cart/") && !strings.HasPrefix(r.Path, "/api/orders/") {
			t.Fatalf("the token went to %s", r.Path)
		}
		if r.XFF != clientIP {
			t.Fatalf("request %+v without the client's address", r)
		}
	}

	// Sign out, then sign in with the form.
	p = s.do(s.noRedirect, "POST", "/signout", url.Values{})
	if p.status != http.StatusSeeOther || !strings.Contains(p.header.Get("Set-Cookie"), cookieName+"=;") {
		t.Fatalf("sign-out: %d, Set-Cookie %q", p.status, p.header.Get("Set-Cookie"))
	}
	p = s.get("/")
	p.expect(t, "home after sign-out", `id="signin-link"`)
	p.expectNot(t, "home after sign-out", `id="user-name"`)
	p = s.post("/signin", url.Values{"email": {"ann@example.com"}, "password": {"correct horse"}, "next": {"/cart"}})
	if p.status != 200 || p.url != "/cart" {
		t.Fatalf("sign-in: %d at %s", p.status, p.url)
	}
	p.expect(t, "cart after sign-in", `id="user-name">Ann<`, `id="cart-empty"`)

	// An open redirect through next is refused.
	p = s.do(s.noRedirect, "POST", "/signin", url.Values{"email": {"ann@example.com"}, "password": {"correct horse"}, "next": {"//evil.example/"}})
	if p.header.Get("Location") != "/" {
		t.Fatalf("next=//evil.example/ led to %q", p.header.Get("Location"))
	}

	// The gateway's rate limit on sign-in is shown as such.
	s.gw.set(func(f *fakeGateway) { f.signin = "rate-limited" })
	p = s.post("/signin", url.Values{"email": {"ann@example.com"}, "password": {"correct horse"}})
	if p.status != 429 {
		t.Fatalf("rate-limited sign-in: %d", p.status)
	}
	p.expect(t, "rate-limited sign-in", `id="form-error"`, "Too many sign-in attempts")
}

func TestStaleTokenIsCleared(t *testing.T) {
	s := newShop(t)
	u, _ := url.Parse(s.url)
	// An expired token: signed out, the cookie cleared, the page still public.
	s.client.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: fakeToken("u9", "Old", "old@example.com", time.Now().Add(-time.Minute))}})
	p := s.get("/articles/p1")
	p.expect(t, "expired token", `id="signin-link"`)
	if len(s.client.Jar.Cookies(u)) != 0 {
		t.Fatalf("the expired cookie was not cleared")
	}
	if cc := p.header.Get("Cache-Control"); cc != "private, no-store" {
		t.Fatalf("an answer that clears a cookie: Cache-Control %q", cc)
	}
	// A token the gateway refuses (unknown to it): the cart page sends to sign-in.
	s.client.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: fakeToken("u9", "Old", "old@example.com", time.Now().Add(time.Hour))}})
	p = s.get("/cart")
	if p.url != "/signin?next=%2Fcart" {
		t.Fatalf("cart with a refused token ended at %s", p.url)
	}
	if len(s.client.Jar.Cookies(u)) != 0 {
		t.Fatalf("the refused cookie was not cleared")
	}
}

func TestSignedOutShopperIsSentToSignIn(t *testing.T) {
	s := newShop(t)
	for _, tc := range []struct{ method, path, location string }{
		{"GET", "/cart", "/signin?next=%2Fcart"},
		{"GET", "/checkout", "/signin?next=%2Fcheckout"},
		{"POST", "/checkout", "/signin?next=%2Fcheckout"},
		{"GET", "/orders", "/signin?next=%2Forders"},
		{"GET", "/orders/o1", "/signin?next=%2Forders%2Fo1"},
		{"POST", "/cart/items", "/signin?next=%2Farticles%2Fl2"},
	} {
		p := s.do(s.noRedirect, tc.method, tc.path, url.Values{"article_id": {"l2"}})
		if p.status != http.StatusSeeOther || p.header.Get("Location") != tc.location {
			t.Errorf("%s %s signed out: %d to %q, want 303 to %q", tc.method, tc.path, p.status, p.header.Get("Location"), tc.location)
		}
	}
}

func TestRecommendationsDegrade(t *testing.T) {
	s := newShop(t)
	for _, mode := range []string{"fail", "breaker", "slow"} {
		t.Run(mode, func(t *testing.T) {
			s.gw.set(func(f *fakeGateway) { f.recs = mode })
			start := time.Now()
			p := s.get("/articles/p3")
			took := time.Since(start)
			if p.status != 200 {
				t.Fatalf("status %d", p.status)
			}
			p.expect(t, "article page", `id="article-name">Steel pot 3<`, `id="add-to-cart"`)
			p.expectNot(t, "article page", `id="recommendations"`)
			if took > 400*time.Millisecond {
				t.Fatalf("the page took %v with recommendations %s", took, mode)
			}
			if p.header.Get("X-Shop-Degraded") != "recommendations" || p.header.Get("Cache-Control") != "public, max-age=5, stale-while-revalidate=5, stale-if-error=600" {
				t.Fatalf("degraded page headers: %v", p.header)
			}
			t.Logf("page without recommendations (%s) in %v", mode, took)
		})
	}
	s.gw.set(func(f *fakeGateway) { f.recs = "ok" })
	p := s.get("/articles/p3")
	p.expect(t, "article page", `id="recommendations"`)
	if n := p.count(`class="recommendation"`); n != maxRecs {
		t.Fatalf("%d recommendations, want %d", n, maxRecs)
	}
	if p.header.Get("X-Shop-Degraded") != "" {
		t.Fatal("a page with recommendations marked degraded")
	}
}

func TestCartAndCheckout(t *testing.T) {
	s := newShop(t)
	s.signIn("Bob", "bob@example.com")

	// Two articles into the cart, one of them twice.
	p := s.post("/cart/items", url.Values{"article_id": {"l1"}, "qty": {"1"}})
	if p.status != 200 || p.url != "/cart?added=l1" {
		t.Fatalf("add to cart: %d at %s", p.status, p.url)
	}
	p.expect(t, "cart", `id="cart-notice"`, "Solar lamp", `id="cart-count">1<`)
	s.post("/cart/items", url.Values{"article_id": {"k2"}, "qty": {"2"}})
	p = s.post("/cart/items", url.Values{"article_id": {"p7"}})
	p.expect(t, "cart", `id="cart"`, `class="cart-item" data-article-id="l1"`, `class="cart-item" data-article-id="k2"`,
		`class="cart-item" data-article-id="p7"`, `id="cart-count">4<`, `id="checkout-link"`,
		`<form class="update-qty" action="/cart/items/k2" method="post">`, `<form class="remove-item" action="/cart/items/p7/remove" method="post">`)
	if n := p.count(`class="cart-item"`); n != 3 {
		t.Fatalf("%d cart items, want 3", n)
	}
	// Change a quantity, remove an article.
	p = s.post("/cart/items/k2", url.Values{"qty": {"3"}})
	p.expect(t, "cart after the update", `id="cart-count">5<`, `value="3"`, `id="cart-total">€180.03<`)
	p = s.post("/cart/items/p7/remove", url.Values{})
	if n := p.count(`class="cart-item"`); n != 2 || p.url != "/cart" {
		t.Fatalf("after the removal: %d cart items at %s", n, p.url)
	}
	p.expect(t, "cart after the removal", `id="cart-count">4<`, `id="cart-total">€169.96<`)
	if p = s.post("/cart/items/k2", url.Values{"qty": {"-1"}}); p.status != 400 {
		t.Fatalf("a negative quantity: %d", p.status)
	}

	// The checkout page summarizes the cart.
	p = s.get("/checkout")
	p.expect(t, "checkout", `id="checkout-summary"`, `class="checkout-item" data-article-id="l1"`, `id="checkout-total">€169.96<`,
		`<form id="place-order" action="/checkout" method="post">`)

	// Out of stock: 409, the article named, the cart kept.
	s.gw.set(func(f *fakeGateway) { f.checkout = "out-of-stock" })
	p = s.post("/checkout", url.Values{})
	if p.status != 409 {
		t.Fatalf("out-of-stock checkout: %d", p.status)
	}
	p.expect(t, "out of stock", `id="checkout-error" class="error out-of-stock" role="alert" data-article-id="k2"`,
		"“Chef knife 2” is out of stock", `id="place-order"`)
	// Declined: 402.
	s.gw.set(func(f *fakeGateway) { f.checkout = "declined" })
	p = s.post("/checkout", url.Values{})
	if p.status != 402 {
		t.Fatalf("declined checkout: %d", p.status)
	}
	p.expect(t, "declined", `id="checkout-error" class="error declined"`, "payment was declined", `id="place-order"`)

	// Placed: the order's page with the confirmation, the cart empty.
	s.gw.set(func(f *fakeGateway) { f.checkout = "ok" })
	p = s.post("/checkout", url.Values{})
	if p.status != 200 || p.url != "/orders/o1?placed=1" {
		t.Fatalf("checkout: %d at %s", p.status, p.url)
	}
	p.expect(t, "order confirmation", `id="order-confirmation"`, `id="order" data-order-id="o1"`, `id="order-status">confirmed<`,
		`class="order-item" data-article-id="k2"`, `id="order-total">€169.96<`, `id="order-created">2026-11-27 09:30 UTC<`, `id="cart-count">0<`)
	if cc := p.header.Get("Cache-Control"); cc != "private, no-store" {
		t.Fatalf("order page: Cache-Control %q", cc)
	}
	p = s.get("/orders")
	p.expect(t, "orders", `id="orders"`, `class="order-row" data-order-id="o1"`, `href="/orders/o1"`)
	p = s.get("/orders/o1")
	p.expect(t, "order", `id="order-id">o1<`)
	p.expectNot(t, "order", `id="order-confirmation"`)
	if p = s.get("/orders/o9"); p.status != 404 {
		t.Fatalf("unknown order: %d", p.status)
	}
	// An empty cart cannot be checked out.
	p = s.post("/checkout", url.Values{})
	if p.status != 400 {
		t.Fatalf("checkout of an empty cart: %d", p.status)
	}
	p.expect(t, "empty checkout", `class="error empty-cart"`, `id="cart-empty"`)
	p.expectNot(t, "empty checkout", `id="place-order"`)
}

func TestGatewayDown(t *testing.T) {
	s := newShop(t)
	s.gw.srv.Close()
	p := s.get("/articles/p1")
	if p.status != 503 {
		t.Fatalf("article page with the gateway down: %d", p.status)
	}
	p.expect(t, "gateway down", `id="error-page" data-status="503"`)
	if cc := p.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("error page: Cache-Control %q", cc)
	}
	// The home page renders without its parts.
	p = s.get("/")
	if p.status != 200 {
		t.Fatalf("home with the gateway down: %d", p.status)
	}
	p.expect(t, "home, gateway down", `id="departments-unavailable"`, `id="featured-unavailable"`)
}

func TestFragmentsEscape(t *testing.T) {
	got := string(cardsHTML([]Article{{ID: `a"b/c?d`, Name: `<script>alert("x")</script> & co`, PriceCents: 5}}, "recommendation"))
	for _, want := range []string{
		`<div class="recommendation"><div class="article-card" data-article-id="a&#34;b/c?d">`,
		`href="/articles/a%22b%2Fc%3Fd"`,
		`<span class="article-name">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co</span>`,
		`<span class="article-price">€0.05</span>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("card: no %s in\n%s", want, got)
		}
	}
	nav := string(navHTML([]Department{{ID: "x y", Name: "Home & <Garden>"}}))
	if want := `<a class="nav-department" data-department-id="x y" href="/departments/x%20y">Home &amp; &lt;Garden&gt;</a>`; !strings.Contains(nav, want) {
		t.Errorf("nav: no %s in\n%s", want, nav)
	}
	for cents, want := range map[int64]string{0: "€0.00", 1999: "€19.99", 100000: "€1000.00", -250: "-€2.50"} {
		if got := formatPrice(cents); got != want {
			t.Errorf("formatPrice(%d) = %s, want %s", cents, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:8080": true, "http://127.0.0.1:8080/": true, "https://shop.example": true,
		"http://localhost": true, "http://[::1]:8080": true,
		"": false, "127.0.0.1:8080": false, "ftp://x.example": false, "http://wolke-gateway": false,
		"http://gw.example/api": false, "http://gw.example/?x=1": false,
	} {
		c := Config{GatewayURL: url, APITimeout: time.Second, CheckoutTimeout: time.Second}
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("GATEWAY_URL=%q: %v", url, err)
		}
	}
}

package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/servicewatch"
)

func TestPrefixMatch(t *testing.T) {
	for _, tc := range []struct {
		path, prefix string
		want         bool
	}{
		{"/cart", "/cart", true},
		{"/cart/", "/cart", true},
		{"/cart/items/1", "/cart", true},
		{"/cartoon", "/cart", false},
		{"/car", "/cart", false},
		{"/anything", "/", true},
		{"/", "/", true},
		{"/api/v1/x", "/api/", true},
	} {
		if got := prefixMatch([]byte(tc.path), tc.prefix); got != tc.want {
			t.Errorf("prefixMatch(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
	}
}

func TestTableMatch(t *testing.T) {
	svc := func(name string) *service { return &service{name: name} }
	cart, shop, store, api, apiHi := svc("cart"), svc("shop"), svc("storefront"), svc("api"), svc("api-hi")
	tbl := newTable([]*route{
		{spec: RouteSpec{Prefix: "/cart", StripPrefix: true}, svc: cart},
		{spec: RouteSpec{Host: "cart.wolke", Prefix: "/"}, svc: cart},
		{spec: RouteSpec{Host: "shop.example", Prefix: "/"}, svc: shop},
		{spec: RouteSpec{Prefix: "/"}, svc: store},
		{spec: RouteSpec{Prefix: "/api"}, svc: api},
		{spec: RouteSpec{Prefix: "/api", Priority: 5}, svc: apiHi},
	})
	for _, tc := range []struct {
		host, path, want string
	}{
		{"localhost:8080", "/cart/items", "cart"},    // path route
		{"CART.wolke:8080", "/anything", "cart"},     // host route, case and port ignored
		{"shop.example", "/cart/x", "cart"},          // longer prefix beats the host's "/"
		{"shop.example", "/about", "shop"},           // host "/" beats any-host "/"
		{"localhost", "/cartoon", "storefront"},      // segment boundary
		{"localhost", "/api/orders", "api-hi"},       // same prefix: priority
		{"localhost", "/", "storefront"},             // catch-all
		{"[::1]:8080", "/cart", "cart"},              // IPv6 host literal
		{"unknown.example", "/cart/1", "cart"},       // unknown host falls to any-host routes
		{"cart.wolke", "/api/orders", "api-hi"},      // a longer any-host prefix wins over a host's "/"
		{"shop.example", "/", "shop"},                //
		{"localhost", "/storefront/x", "storefront"}, // via "/"
	} {
		r := tbl.match([]byte(tc.host), []byte(tc.path))
		if r == nil || r.svc.name != tc.want {
			got := "<nil>"
			if r != nil {
				got = r.svc.name
			}
			t.Errorf("match(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	if r := newTable([]*route{{spec: RouteSpec{Prefix: "/cart"}, svc: cart}}).match([]byte("x"), []byte("/other")); r != nil {
		t.Errorf("want no route, got %s", r.svc.name)
	}
}

func TestServicePolicyFromTags(t *testing.T) {
	inst := func(id string, tags []string, meta map[string]string) servicewatch.Instance {
		return servicewatch.Instance{ID: id, Tags: tags, Meta: meta}
	}
	for _, tc := range []struct {
		name     string
		insts    []servicewatch.Instance
		want     []RouteSpec
		enabled  bool
		lb       string
		attempts int
		errs     int
	}{
		{name: "defaults", insts: []servicewatch.Instance{inst("a", nil, nil)},
			want: []RouteSpec{{Prefix: "/cart", StripPrefix: true}, {Host: "cart.wolke", Prefix: "/"}}, enabled: true, lb: "p2c", attempts: 3},
		{name: "path", insts: []servicewatch.Instance{inst("a", []string{"wolke.http.path=/basket/", "wolke.http.strip-prefix=false", "wolke.http.priority=7"}, nil)},
			want: []RouteSpec{{Prefix: "/basket", StripPrefix: false, Priority: 7}}, enabled: true, lb: "p2c", attempts: 3},
		{name: "host", insts: []servicewatch.Instance{inst("a", []string{"wolke.http.host=Shop.Example"}, nil)},
			want: []RouteSpec{{Host: "shop.example", Prefix: "/"}}, enabled: true, lb: "p2c", attempts: 3},
		{name: "host and path", insts: []servicewatch.Instance{inst("a", []string{"wolke.http.host=shop.example", "wolke.http.path=/cart"}, nil)},
			want: []RouteSpec{{Host: "shop.example", Prefix: "/cart", StripPrefix: true}}, enabled: true, lb: "p2c", attempts: 3},
		{name: "meta spelling", insts: []servicewatch.Instance{inst("a", nil, map[string]string{"wolke_http_path": "/", "wolke_lb": "round-robin", "wolke_retry_attempts": "2"})},
			want: []RouteSpec{{Prefix: "/", StripPrefix: true}}, enabled: true, lb: "round-robin", attempts: 2},
		{name: "disabled", insts: []servicewatch.Instance{inst("a", []string{"wolke.http.enable=false"}, nil)},
			want: []RouteSpec{{Prefix: "/cart", StripPrefix: true}, {Host: "cart.wolke", Prefix: "/"}}, enabled: false, lb: "p2c", attempts: 3},
		{name: "smallest ID wins", insts: []servicewatch.Instance{inst("b", []string{"wolke.lb=hash"}, nil), inst("a", []string{"wolke.lb=least-request"}, nil)},
			want: []RouteSpec{{Prefix: "/cart", StripPrefix: true}, {Host: "cart.wolke", Prefix: "/"}}, enabled: true, lb: "least-request", attempts: 3},
		{name: "bad values are skipped", insts: []servicewatch.Instance{inst("a", []string{"wolke.lb=fastest", "wolke.retry.attempts=99", "wolke.http.path=nope", "wolke.timeout=-1s"}, nil)},
			want: []RouteSpec{{Prefix: "/cart", StripPrefix: true}, {Host: "cart.wolke", Prefix: "/"}}, enabled: true, lb: "p2c", attempts: 3, errs: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, enabled, errs := servicePolicy("cart", "wolke", DefaultPolicy(), serviceSettings(tc.insts))
			if len(errs) != tc.errs {
				t.Fatalf("errors %v, want %d", errs, tc.errs)
			}
			if enabled != tc.enabled || pol.LB != tc.lb || pol.Attempts != tc.attempts {
				t.Errorf("enabled %v lb %s attempts %d, want %v %s %d", enabled, pol.LB, pol.Attempts, tc.enabled, tc.lb, tc.attempts)
			}
			if len(pol.Routes) != len(tc.want) {
				t.Fatalf("routes %+v, want %+v", pol.Routes, tc.want)
			}
			for i := range tc.want {
				if pol.Routes[i] != tc.want[i] {
					t.Errorf("route %d = %+v, want %+v", i, pol.Routes[i], tc.want[i])
				}
			}
			if err := pol.Validate(); err != nil {
				t.Errorf("policy invalid: %v", err)
			}
		})
	}
}

func TestPolicyTimeoutsFromTags(t *testing.T) {
	pol, _, errs := servicePolicy("s", "wolke", DefaultPolicy(), serviceSettings([]servicewatch.Instance{{ID: "a",
		Tags: []string{"wolke.timeout.connect=250ms", "wolke.timeout.header=2s", "wolke.timeout=5s", "wolke.outlier.base-ejection=400ms", "wolke.breaker.failure-ratio=0.25"}}}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if time.Duration(pol.ConnectTimeout) != 250*time.Millisecond || time.Duration(pol.HeaderTimeout) != 2*time.Second ||
		time.Duration(pol.Timeout) != 5*time.Second || time.Duration(pol.OutlierBaseEjection) != 400*time.Millisecond || pol.BreakerFailureRatio != 0.25 {
		t.Errorf("policy %+v", pol)
	}
}

func TestTraceparent(t *testing.T) {
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	out := string(traceparent([]byte(in), nil))
	if !strings.HasPrefix(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(out, "-01") || out == in || !validTraceparent([]byte(out)) {
		t.Errorf("child of %s = %s", in, out)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		out := traceparent([]byte(bad), nil)
		if !validTraceparent(out) || strings.Contains(string(out), "4bf92f3577b34da6a3ce929d0e0e4736") {
			t.Errorf("for %q got %s, want a fresh valid traceparent", bad, out)
		}
	}
	a, b := string(traceparent(nil, nil)), string(traceparent(nil, nil))
	if a[3:35] == b[3:35] {
		t.Errorf("two fresh traces share an ID: %s %s", a, b)
	}
}

func TestRequestID(t *testing.T) {
	if !validRequestID([]byte("abc-123")) || validRequestID([]byte("a b")) || validRequestID([]byte(strings.Repeat("x", 129))) || validRequestID(nil) {
		t.Error("validRequestID")
	}
	id := newRequestID(nil)
	if len(id) != 32 || !isHex(id) {
		t.Errorf("newRequestID = %q", id)
	}
}

func TestConcurrencyPolicyBounds(t *testing.T) {
	for _, doc := range []string{
		`{"concurrency": {"min_limit": 50}}`,
		`{"concurrency": {"max_limit": 10}}`,
		`{"concurrency": {"min_limit": 2000, "max_limit": 3000}}`,
	} {
		pol, err := ParseDoc([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		p, err := New(Config{MaxConnsPerInstance: 1, MaxRequestBodySize: 1})
		if err != nil {
			t.Fatal(err)
		}
		s := p.newService("s")
		p.updateService(s, pol, true, nil) // must not panic
		if l := s.state.Load().conc.Limit(); l < max(pol.Concurrency.MinLimit, 1) {
			t.Errorf("%s: limit %d", doc, l)
		}
	}
	if _, err := ParseDoc([]byte(`{"concurrency": {"min_limit": 5000}}`)); err == nil {
		t.Error("min_limit 5000 without max_limit accepted")
	}
}

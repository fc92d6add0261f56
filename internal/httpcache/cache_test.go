package httpcache

import (
	"errors"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const url = "http://shop.example/items?id=7"

func TestMissThenHitWithAge(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "Date", newClock().httpDate(0))}

	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=miss; stored", 200, "v1")
	clk.Advance(10 * time.Second)
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; hit", 200, "v1")
	if age := header(ctx, "Age"); age != "10" {
		t.Errorf("Age %q, want 10", age)
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("origin called %d times, want 1", n)
	}
	// Another URI, and the same path on another host, are other objects.
	get(t, c, o.fetch, "http://shop.example/items?id=8")
	get(t, c, o.fetch, "http://other.example/items?id=7")
	if n := o.calls.Load(); n != 3 {
		t.Errorf("origin called %d times, want 3", n)
	}
	st2 := c.Stats()
	if st2.Hits != 1 || st2.Misses != 3 || st2.Stores != 3 || st2.Objects != 3 || st2.Bytes <= 0 {
		t.Errorf("stats %+v", st2)
	}
}

func TestAgeCountsUpstreamAgeAndDelay(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: func(_ int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		clk.Advance(2 * time.Second) // response delay counts into the age
		reply(resp, 200, "x", "Cache-Control", "max-age=60", "Age", "30")
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(5 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	if st != statusHit || header(ctx, "Age") != "37" {
		t.Fatalf("%s, Age %q, want hit, 37", st, header(ctx, "Age"))
	}
	clk.Advance(24 * time.Second) // age 61 > 60
	if _, st = get(t, c, o.fetch, url); st != "wolke; fwd=stale; stored" {
		t.Fatalf("after max-age: %s", st)
	}
}

func TestHeadServedFromGet(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60")}
	get(t, c, o.fetch, url)
	ctx, st := do(t, c, o.fetch, fasthttp.MethodHead, url)
	if st != statusHit || !ctx.Response.SkipBody || ctx.Response.Header.ContentLength() != 2 {
		t.Fatalf("HEAD: %s, SkipBody %v, Content-Length %d", st, ctx.Response.SkipBody, ctx.Response.Header.ContentLength())
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times", n)
	}
}

func TestHeadMissIsForwardedNotStored(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: static(200, "", "Cache-Control", "max-age=60")}
	if _, st := do(t, c, o.fetch, fasthttp.MethodHead, url); st != "wolke; fwd=miss" {
		t.Fatalf("HEAD miss: %s", st)
	}
	if m := o.lastMethod(); m != fasthttp.MethodHead {
		t.Fatalf("origin got %s", m)
	}
	if _, st := get(t, c, o.fetch, url); st != "wolke; fwd=miss; stored" {
		t.Fatalf("GET after HEAD: %s", st)
	}
}

func TestFreshnessLifetime(t *testing.T) {
	clk0 := newClock()
	date := clk0.httpDate(0)
	for _, tc := range []struct {
		name      string
		kv        []string
		ttl       time.Duration
		freshFor  time.Duration // fresh just before, stale (or not stored) after; 0: not stored
		validator bool
	}{
		{name: "s-maxage over max-age", kv: []string{"Cache-Control", "max-age=100, s-maxage=10"}, freshFor: 10 * time.Second},
		{name: "max-age over Expires", kv: []string{"Cache-Control", "max-age=20", "Date", date, "Expires", clk0.httpDate(100 * time.Second)}, freshFor: 20 * time.Second},
		{name: "Expires minus Date", kv: []string{"Date", date, "Expires", clk0.httpDate(30 * time.Second)}, freshFor: 30 * time.Second},
		{name: "Expires minus Date skewed", kv: []string{"Date", clk0.httpDate(-time.Hour), "Expires", clk0.httpDate(-time.Hour + 30*time.Second)}, freshFor: 0},
		{name: "invalid Expires", kv: []string{"Expires", "0"}, freshFor: 0},
		{name: "nothing explicit", kv: nil, freshFor: 0},
		{name: "nothing explicit, heuristic", kv: nil, ttl: 5 * time.Second, freshFor: 5 * time.Second},
		{name: "max-age=0 without validator", kv: []string{"Cache-Control", "max-age=0"}, freshFor: 0},
		{name: "first max-age wins", kv: []string{"Cache-Control", "max-age=15", "Cache-Control", "max-age=99"}, freshFor: 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := newTestCache(t, func(cfg *Config) { cfg.DefaultTTL = tc.ttl })
			o := &origin{handle: versioned(tc.kv...)}
			_, st := get(t, c, o.fetch, url)
			if tc.freshFor == 0 {
				if st != "wolke; fwd=miss" {
					t.Fatalf("first: %s, want not stored", st)
				}
				if _, st = get(t, c, o.fetch, url); st == statusHit {
					t.Fatal("answered from the cache")
				}
				return
			}
			if st != "wolke; fwd=miss; stored" {
				t.Fatalf("first: %s", st)
			}
			clk.Advance(tc.freshFor - time.Second)
			if _, st = get(t, c, o.fetch, url); st != statusHit {
				t.Fatalf("before expiry: %s", st)
			}
			clk.Advance(time.Second)
			ctx, st := get(t, c, o.fetch, url)
			if st == statusHit || bodyOf(t, ctx) != "v2" {
				t.Fatalf("after expiry: %s %q", st, bodyOf(t, ctx))
			}
		})
	}
}

func TestNotStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    []string
		resp   []string
		status string
	}{
		{"response no-store", nil, []string{"Cache-Control", "max-age=60, no-store"}, "wolke; fwd=miss"},
		{"response private", nil, []string{"Cache-Control", "private, max-age=60"}, "wolke; fwd=miss"},
		{"request no-store", []string{"Cache-Control", "no-store"}, []string{"Cache-Control", "max-age=60"}, statusBypass},
		{"Vary star", nil, []string{"Cache-Control", "max-age=60", "Vary", "Accept, *"}, "wolke; fwd=miss"},
		{"Set-Cookie not public", nil, []string{"Cache-Control", "max-age=60", "Set-Cookie", "sid=1"}, "wolke; fwd=miss"},
		{"Authorization", []string{"Authorization", "Bearer x"}, []string{"Cache-Control", "max-age=60"}, "wolke; fwd=request"},
		{"Range", []string{"Range", "bytes=0-1"}, []string{"Cache-Control", "max-age=60"}, statusBypass},
		{"206", nil, []string{"Cache-Control", "max-age=60", "Content-Range", "bytes 0-1/9"}, "wolke; fwd=miss"},
		{"500", nil, []string{"Cache-Control", "max-age=60"}, "wolke; fwd=miss"},
		{"no-cache without validator", nil, []string{"Cache-Control", "no-cache, max-age=60"}, "wolke; fwd=miss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestCache(t, nil)
			code := 200
			switch tc.name {
			case "206":
				code = 206
			case "500":
				code = 500
			}
			o := &origin{handle: static(code, "body", tc.resp...)}
			ctx, st := get(t, c, o.fetch, url, tc.req...)
			if st != tc.status || ctx.Response.StatusCode() != code || bodyOf(t, ctx) != "body" {
				t.Fatalf("first: %s %d, want %s %d", st, ctx.Response.StatusCode(), tc.status, code)
			}
			if s := c.Stats(); s.Objects != 0 {
				t.Fatalf("%d objects stored", s.Objects)
			}
			get(t, c, o.fetch, url) // a plain request: would hit if it had been stored
			if n := o.calls.Load(); n != 2 {
				t.Fatalf("origin called %d times, want 2 (nothing stored)", n)
			}
		})
	}
}

// A Set-Cookie response is stored only when explicitly public (or Set-Cookie is
// named in a qualified no-cache/private), and then without the cookie: the
// client whose request fetched it gets its cookie, nobody else does.
func TestSetCookie(t *testing.T) {
	for _, cc := range []string{"public, max-age=60", `max-age=60, no-cache="Set-Cookie"`, `max-age=60, private="set-cookie"`} {
		t.Run(cc, func(t *testing.T) {
			c, _ := newTestCache(t, nil)
			o := &origin{handle: versioned("Cache-Control", cc, "Set-Cookie", "sid=alice", "X-Keep", "yes")}
			ctx, st := get(t, c, o.fetch, url)
			if st != "wolke; fwd=miss; stored" || header(ctx, "Set-Cookie") != "sid=alice" {
				t.Fatalf("first: %s, Set-Cookie %q", st, header(ctx, "Set-Cookie"))
			}
			ctx, st = get(t, c, o.fetch, url)
			if st != statusHit || header(ctx, "Set-Cookie") != "" || header(ctx, "X-Keep") != "yes" {
				t.Fatalf("hit: %s, Set-Cookie %q, X-Keep %q", st, header(ctx, "Set-Cookie"), header(ctx, "X-Keep"))
			}
		})
	}
}

// private="field" lets a shared cache store the response without the field.
func TestQualifiedPrivate(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", `max-age=60, private="X-User"`, "X-User", "alice")}
	ctx, _ := get(t, c, o.fetch, url)
	if header(ctx, "X-User") != "alice" {
		t.Fatalf("fetching client lost X-User")
	}
	ctx, st := get(t, c, o.fetch, url)
	if st != statusHit || header(ctx, "X-User") != "" {
		t.Fatalf("hit: %s, X-User %q", st, header(ctx, "X-User"))
	}
}

func TestAuthorization(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "public, max-age=60")}
	auth := []string{"Authorization", "Bearer alice"}
	if _, st := get(t, c, o.fetch, url, auth...); st != "wolke; fwd=request; stored" {
		t.Fatalf("authorized, public: %s", st)
	}
	if ctx, st := get(t, c, o.fetch, url); st != statusHit || bodyOf(t, ctx) != "v1" {
		t.Fatalf("anonymous after public: %s", st)
	}
	// A public response may answer an authorized request too (the gateway checked the
	// credentials before asking the cache)...
	if ctx, st := get(t, c, o.fetch, url, auth...); st != statusHit || bodyOf(t, ctx) != "v1" {
		t.Fatalf("authorized after public: %s", st)
	}
	// ...but what the origin did not declare public never answers one.
	o2 := &origin{handle: versioned("Cache-Control", "max-age=60")}
	const url2 = "http://shop.example/private-ish"
	if _, st := get(t, c, o2.fetch, url2); st != "wolke; fwd=miss; stored" {
		t.Fatalf("anonymous, max-age only: %s", st)
	}
	if _, st := get(t, c, o2.fetch, url2, auth...); st == statusHit {
		t.Fatal("a request with Authorization was answered with a response not declared public")
	}
}

func TestVary(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: func(_ int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		reply(resp, 200, "enc="+string(req.Header.Peek("Accept-Encoding")), "Cache-Control", "max-age=60", "Vary", "accept-encoding, Accept-Language")
		return nil
	}}
	gzip := []string{"Accept-Encoding", "gzip, br"}
	steps := []struct {
		kv     []string
		status string
		body   string
	}{
		{gzip, "wolke; fwd=miss; stored", "enc=gzip, br"},
		{[]string{"Accept-Encoding", "zstd"}, "wolke; fwd=vary-miss; stored", "enc=zstd"},
		{[]string{"Accept-Encoding", "gzip,br"}, statusHit, "enc=gzip, br"}, // whitespace normalized
		{[]string{"Accept-Encoding", "zstd"}, statusHit, "enc=zstd"},
		{nil, "wolke; fwd=vary-miss; stored", "enc="},                             // absent
		{[]string{"Accept-Encoding", ""}, "wolke; fwd=vary-miss; stored", "enc="}, // empty differs from absent
		{[]string{"Accept-Encoding", "gzip, br", "Accept-Language", "de"}, "wolke; fwd=vary-miss; stored", "enc=gzip, br"},
		{nil, statusHit, "enc="},
	}
	for i, s := range steps {
		ctx, st := get(t, c, o.fetch, url, s.kv...)
		if st != s.status || bodyOf(t, ctx) != s.body {
			t.Fatalf("step %d: %s %q, want %s %q", i, st, bodyOf(t, ctx), s.status, s.body)
		}
	}
	if s := c.Stats(); s.Objects != 5 {
		t.Fatalf("%d variants stored, want 5", s.Objects)
	}
}

func TestClientConditionalAnsweredFromCache(t *testing.T) {
	c, clk := newTestCache(t, nil)
	lm := clk.httpDate(-time.Hour)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "ETag", `W/"a1"`, "Last-Modified", lm)}
	get(t, c, o.fetch, url)
	for _, tc := range []struct {
		kv   []string
		code int
	}{
		{[]string{"If-None-Match", `"zz", "a1"`}, 304}, // weak comparison
		{[]string{"If-None-Match", `*`}, 304},
		{[]string{"If-None-Match", `"zz"`}, 200},
		{[]string{"If-None-Match", `"zz"`, "If-Modified-Since", clk.httpDate(0)}, 200}, // If-None-Match wins
		{[]string{"If-Modified-Since", clk.httpDate(0)}, 304},
		{[]string{"If-Modified-Since", lm}, 304},
		{[]string{"If-Modified-Since", clk.httpDate(-2 * time.Hour)}, 200},
	} {
		ctx, st := get(t, c, o.fetch, url, tc.kv...)
		if st != statusHit || ctx.Response.StatusCode() != tc.code {
			t.Errorf("%v: %s %d, want hit %d", tc.kv, st, ctx.Response.StatusCode(), tc.code)
		}
		if tc.code == 304 && (len(ctx.Response.Body()) != 0 || header(ctx, "ETag") != `W/"a1"`) {
			t.Errorf("%v: 304 with body %q, ETag %q", tc.kv, ctx.Response.Body(), header(ctx, "ETag"))
		}
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times", n)
	}
}

func TestOnlyIfCached(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60")}
	ctx, st := get(t, c, o.fetch, url, "Cache-Control", "only-if-cached")
	if st != statusOnlyIfCache || ctx.Response.StatusCode() != 504 || o.calls.Load() != 0 {
		t.Fatalf("miss: %s %d, %d calls", st, ctx.Response.StatusCode(), o.calls.Load())
	}
	get(t, c, o.fetch, url)
	if _, st = get(t, c, o.fetch, url, "Cache-Control", "only-if-cached"); st != statusHit {
		t.Fatalf("stored: %s", st)
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: func(_ int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		if req.Header.IsPost() {
			reply(resp, 201, "", "Location", "/items?id=9", "Content-Location", "http://other.example/items?id=1")
			return nil
		}
		reply(resp, 200, "x", "Cache-Control", "max-age=60")
		return nil
	}}
	for _, u := range []string{url, "http://shop.example/items?id=9", "http://other.example/items?id=1"} {
		get(t, c, o.fetch, u)
	}
	// A failed POST invalidates nothing; OPTIONS is safe.
	fail := &origin{handle: static(500, "")}
	if _, st := do(t, c, fail.fetch, fasthttp.MethodPost, url); st != statusMethod {
		t.Fatalf("POST: %s", st)
	}
	do(t, c, o.fetch, fasthttp.MethodOptions, url)
	if s := c.Stats(); s.Objects != 3 {
		t.Fatalf("%d objects after failed POST and OPTIONS, want 3", s.Objects)
	}
	do(t, c, o.fetch, fasthttp.MethodPost, url)
	if s := c.Stats(); s.Objects != 1 {
		t.Fatalf("%d objects after POST, want 1 (the other host's)", s.Objects)
	}
	if _, st := get(t, c, o.fetch, url); st != "wolke; fwd=miss; stored" {
		t.Fatalf("after POST: %s", st)
	}
}

func TestPurge(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60")}
	for _, u := range []string{"http://a.example/static/1", "http://a.example/static/2", "http://a.example/api", "http://b.example/static/1"} {
		get(t, c, o.fetch, u)
	}
	if n := c.Purge("a.example/static/"); n != 2 {
		t.Fatalf("purged %d, want 2", n)
	}
	if _, st := get(t, c, o.fetch, "http://a.example/static/1"); st != "wolke; fwd=miss; stored" {
		t.Fatalf("after purge: %s", st)
	}
	if _, st := get(t, c, o.fetch, "http://a.example/api"); st != statusHit {
		t.Fatalf("unpurged: %s", st)
	}
	if n := c.Purge(""); n != 3 {
		t.Fatalf("purged %d, want 3", n)
	}
	if s := c.Stats(); s.Objects != 0 || s.Bytes != 0 {
		t.Fatalf("after purging all: %+v", s)
	}
}

func TestFetchErrorIsBadGateway(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: func(int64, *fasthttp.Request, *fasthttp.Response) error { return errors.New("connection refused") }}
	ctx, st := get(t, c, o.fetch, url)
	if st != "wolke; fwd=miss" || ctx.Response.StatusCode() != 502 {
		t.Fatalf("%s %d", st, ctx.Response.StatusCode())
	}
}

func TestCacheStatusKeepsUpstreamMembers(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "Cache-Status", "origin-cache; fwd=uri-miss")}
	ctx, _ := get(t, c, o.fetch, url)
	if got := header(ctx, HeaderCacheStatus); got != "origin-cache; fwd=uri-miss, wolke; fwd=miss; stored" {
		t.Fatalf("Cache-Status %q", got)
	}
	ctx, _ = get(t, c, o.fetch, url)
	if got := header(ctx, HeaderCacheStatus); got != "origin-cache; fwd=uri-miss, wolke; hit" {
		t.Fatalf("Cache-Status on a hit %q", got)
	}
	o2 := &origin{handle: versioned("Cache-Control", "max-age=60")}
	get(t, c, o2.fetch, url+"&plain")
	if ctx, _ = get(t, c, o2.fetch, url+"&plain"); header(ctx, HeaderCacheStatus) != statusHit {
		t.Fatalf("Cache-Status on a plain hit %q", header(ctx, HeaderCacheStatus))
	}
}

func TestHopByHopFieldsNotStored(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "Connection", "X-Conn-Only", "X-Conn-Only", "1",
		"Keep-Alive", "timeout=5", "X-End-To-End", "1")}
	get(t, c, o.fetch, url)
	ctx, _ := get(t, c, o.fetch, url)
	if header(ctx, "X-Conn-Only") != "" || header(ctx, "Keep-Alive") != "" || header(ctx, "X-End-To-End") != "1" {
		t.Fatalf("stored fields: %s", ctx.Response.Header.String())
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{MaxBytes: -1}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative MaxBytes: %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := New(Config{MaxBytes: 1000, MaxObjectSize: 5000})
	if c.cfg.MaxObjectSize != 1000 || c.cfg.Now == nil {
		t.Fatalf("defaults: %+v", c.cfg)
	}
	if d := New(Config{}).cfg; d.MaxBytes != DefaultMaxBytes || d.MaxObjectSize != DefaultMaxObjectSize {
		t.Fatalf("zero config: %+v", d)
	}
}

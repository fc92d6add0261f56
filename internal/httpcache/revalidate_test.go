package httpcache

import (
	"errors"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// etagOrigin serves body with ETag tag, answering a matching If-None-Match with
// a 304 that carries cc.
func etagOrigin(tag, body, cc string) *origin {
	return &origin{handle: func(_ int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		if string(req.Header.Peek("If-None-Match")) == tag {
			reply(resp, 304, "", "Cache-Control", cc, "ETag", tag, "X-Refreshed", "yes")
			return nil
		}
		reply(resp, 200, body, "Cache-Control", cc, "ETag", tag, "Content-Type", "text/plain")
		return nil
	}}
}

func TestRevalidateWithETag(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := etagOrigin(`"e1"`, "payload", "max-age=10")
	get(t, c, o.fetch, url)
	clk.Advance(11 * time.Second)

	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; fwd-status=304; stored", 200, "payload")
	if inm := o.lastHeader("If-None-Match"); inm != `"e1"` {
		t.Fatalf("If-None-Match sent %q", inm)
	}
	if header(ctx, "X-Refreshed") != "yes" || header(ctx, "Content-Type") != "text/plain" {
		t.Fatalf("304 fields not merged: %s", ctx.Response.Header.String())
	}
	// The 304 made it fresh again, for another 10 s.
	clk.Advance(9 * time.Second)
	if ctx, st = get(t, c, o.fetch, url); st != statusHit || header(ctx, "Age") != "9" {
		t.Fatalf("after refresh: %s, Age %s", st, header(ctx, "Age"))
	}
	if s := c.Stats(); s.Revalidations != 1 || o.calls.Load() != 2 {
		t.Fatalf("revalidations %d, calls %d", s.Revalidations, o.calls.Load())
	}
}

func TestRevalidateWithLastModified(t *testing.T) {
	c, clk := newTestCache(t, nil)
	lm := clk.httpDate(-time.Hour)
	o := &origin{handle: func(_ int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		if string(req.Header.Peek("If-Modified-Since")) == lm {
			reply(resp, 304, "", "Cache-Control", "max-age=10")
			return nil
		}
		reply(resp, 200, "doc", "Cache-Control", "max-age=10", "Last-Modified", lm)
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(20 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; fwd-status=304; stored", 200, "doc")
}

// The client's conditional is answered from the revalidated entry: the upstream
// exchange uses the cache's validators, the client gets its 304.
func TestClientConditionalOnRevalidation(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := etagOrigin(`"e1"`, "payload", "max-age=10")
	get(t, c, o.fetch, url)
	clk.Advance(11 * time.Second)
	ctx, st := get(t, c, o.fetch, url, "If-None-Match", `"e1"`)
	expect(t, ctx, st, "wolke; fwd=stale; fwd-status=304; stored", 304, "")
	clk.Advance(11 * time.Second)
	ctx, st = get(t, c, o.fetch, url, "If-None-Match", `"old"`)
	expect(t, ctx, st, "wolke; fwd=stale; fwd-status=304; stored", 200, "payload")
	if inm := o.lastHeader("If-None-Match"); inm != `"e1"` {
		t.Fatalf("If-None-Match sent %q, want the cache's", inm)
	}
}

func TestRevalidationReplacedByNewResponse(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		if n == 1 {
			reply(resp, 200, "old", "Cache-Control", "max-age=10", "ETag", `"1"`)
		} else {
			reply(resp, 200, "new", "Cache-Control", "max-age=10", "ETag", `"2"`)
		}
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(11 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; stored", 200, "new")
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, statusHit, 200, "new")
}

// A 304 whose ETag is not the stored one cannot freshen it: the cache fetches the
// response whole instead.
func TestNotModifiedForAnotherETag(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		switch {
		case n == 1:
			reply(resp, 200, "one", "Cache-Control", "max-age=10", "ETag", `"1"`)
		case len(req.Header.Peek("If-None-Match")) > 0:
			reply(resp, 304, "", "Cache-Control", "max-age=10", "ETag", `"2"`)
		default:
			reply(resp, 200, "two", "Cache-Control", "max-age=10", "ETag", `"2"`)
		}
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(11 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; stored", 200, "two")
	if n := o.calls.Load(); n != 3 {
		t.Fatalf("origin called %d times, want 3", n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	c, clk := newTestCache(t, nil)
	release := make(chan struct{})
	o := &origin{handle: func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		if n > 1 {
			<-release
		}
		reply(resp, 200, "v"+string(rune('0'+n)), "Cache-Control", "max-age=10, stale-while-revalidate=30", "ETag", `"x"`)
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(15 * time.Second)

	// Stale within the window: served at once, refreshed in the background, once.
	for range 3 {
		ctx, st := get(t, c, o.fetch, url)
		expect(t, ctx, st, statusHitSWR, 200, "v1")
	}
	ctx, st := do(t, c, o.fetch, fasthttp.MethodHead, url)
	if st != statusHitSWR || ctx.Response.StatusCode() != 200 {
		t.Fatalf("HEAD while refreshing: %s", st)
	}
	close(release)
	c.wait()
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("origin called %d times, want 2 (one background refresh)", n)
	}
	if inm := o.lastHeader("If-None-Match"); inm != `"x"` || o.lastMethod() != fasthttp.MethodGet {
		t.Fatalf("refresh sent %s with If-None-Match %q", o.lastMethod(), inm)
	}
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, statusHit, 200, "v2")

	// Past the window the stale response is not served.
	clk.Advance(41 * time.Second)
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; stored", 200, "v3")
}

func TestStaleWhileRevalidateRefreshFailsThenRetries(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		if n == 2 {
			return errors.New("reset")
		}
		reply(resp, 200, "v", "Cache-Control", "max-age=10, stale-while-revalidate=30")
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(15 * time.Second)
	get(t, c, o.fetch, url)
	c.wait()
	if _, st := get(t, c, o.fetch, url); st != statusHitSWR {
		t.Fatalf("after a failed refresh: %s", st)
	}
	c.wait()
	if _, st := get(t, c, o.fetch, url); st != statusHit || o.calls.Load() != 3 {
		t.Fatalf("after the second refresh: %s, %d calls", st, o.calls.Load())
	}
}

func TestStaleIfError(t *testing.T) {
	c, clk := newTestCache(t, nil)
	var fail func(*fasthttp.Response) error
	o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		if n > 1 {
			return fail(resp)
		}
		reply(resp, 200, "good", "Cache-Control", "max-age=10, stale-if-error=60")
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(20 * time.Second)

	fail = func(resp *fasthttp.Response) error { reply(resp, 503, "down"); return nil }
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; fwd-status=503; detail=stale-if-error", 200, "good")

	fail = func(*fasthttp.Response) error { return errors.New("dial: connection refused") }
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale; detail=stale-if-error", 200, "good")

	// A 404 is an answer, not an error: it replaces the stale response.
	fail = func(resp *fasthttp.Response) error { reply(resp, 404, "gone"); return nil }
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale", 404, "gone")
	if s := c.Stats(); s.Objects != 0 || s.Stale != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestStaleIfErrorWindowEnds(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		if n > 1 {
			reply(resp, 503, "down")
			return nil
		}
		reply(resp, 200, "good", "Cache-Control", "max-age=10, stale-if-error=60")
		return nil
	}}
	get(t, c, o.fetch, url)
	clk.Advance(71 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=stale", 503, "down")
	// The 503 does not evict what is stored: a later request may revalidate it.
	if s := c.Stats(); s.Objects != 1 {
		t.Fatalf("%d objects", s.Objects)
	}
}

func TestMustRevalidateForbidsStale(t *testing.T) {
	for _, cc := range []string{"must-revalidate", "proxy-revalidate"} {
		t.Run(cc, func(t *testing.T) {
			c, clk := newTestCache(t, nil)
			o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
				if n > 1 {
					reply(resp, 503, "down")
					return nil
				}
				reply(resp, 200, "good", "Cache-Control", "max-age=10, stale-while-revalidate=60, stale-if-error=60, "+cc)
				return nil
			}}
			get(t, c, o.fetch, url)
			clk.Advance(20 * time.Second)
			ctx, st := get(t, c, o.fetch, url)
			expect(t, ctx, st, "wolke; fwd=stale", 503, "down")
			ctx, st = get(t, c, o.fetch, url, "Cache-Control", "max-stale=3600")
			expect(t, ctx, st, "wolke; fwd=stale", 503, "down")
		})
	}
}

func TestNoCacheResponseAlwaysRevalidated(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := etagOrigin(`"n1"`, "fresh-each-time", "no-cache, max-age=600")
	if _, st := get(t, c, o.fetch, url); st != "wolke; fwd=miss; stored" {
		t.Fatalf("first: %s", st)
	}
	for range 2 {
		ctx, st := get(t, c, o.fetch, url)
		expect(t, ctx, st, "wolke; fwd=stale; fwd-status=304; stored", 200, "fresh-each-time")
	}
	if s := c.Stats(); s.Revalidations != 2 || s.Hits != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRequestDirectivesForceValidation(t *testing.T) {
	for _, kv := range [][]string{
		{"Cache-Control", "no-cache"},
		{"Cache-Control", "max-age=0"},
		{"Cache-Control", "min-fresh=30"},
		{"Pragma", "no-cache"},
	} {
		t.Run(kv[1], func(t *testing.T) {
			c, clk := newTestCache(t, nil)
			o := etagOrigin(`"e"`, "body", "max-age=60")
			get(t, c, o.fetch, url)
			clk.Advance(31 * time.Second)
			ctx, st := get(t, c, o.fetch, url, kv...)
			expect(t, ctx, st, "wolke; fwd=request; fwd-status=304; stored", 200, "body")
		})
	}
	// Pragma does not count when Cache-Control is there.
	c, _ := newTestCache(t, nil)
	o := etagOrigin(`"e"`, "body", "max-age=60")
	get(t, c, o.fetch, url)
	if _, st := get(t, c, o.fetch, url, "Pragma", "no-cache", "Cache-Control", "max-age=100"); st != statusHit {
		t.Fatalf("Pragma with Cache-Control: %s", st)
	}
}

func TestRequestMaxStale(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=10")}
	get(t, c, o.fetch, url)
	clk.Advance(30 * time.Second) // 20 s stale
	ctx, st := get(t, c, o.fetch, url, "Cache-Control", "max-stale=25")
	expect(t, ctx, st, statusHitMaxStale, 200, "v1")
	ctx, st = get(t, c, o.fetch, url, "Cache-Control", "max-stale")
	expect(t, ctx, st, statusHitMaxStale, 200, "v1")
	ctx, st = get(t, c, o.fetch, url, "Cache-Control", "max-stale=5")
	expect(t, ctx, st, "wolke; fwd=stale; stored", 200, "v2")

	// s-maxage keeps clients' max-stale away (it implies proxy-revalidate).
	c2, clk2 := newTestCache(t, nil)
	o2 := &origin{handle: versioned("Cache-Control", "s-maxage=10")}
	get(t, c2, o2.fetch, url)
	clk2.Advance(30 * time.Second)
	if _, st = get(t, c2, o2.fetch, url, "Cache-Control", "max-stale=3600"); st != "wolke; fwd=stale; stored" {
		t.Fatalf("max-stale with s-maxage: %s", st)
	}
}

// s-maxage does not cancel the explicit RFC 5861 windows.
func TestSMaxAgeWithStaleWhileRevalidate(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "s-maxage=1, stale-while-revalidate=59")}
	get(t, c, o.fetch, url)
	clk.Advance(5 * time.Second)
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, statusHitSWR, 200, "v1")
	c.wait()
	ctx, st = get(t, c, o.fetch, url)
	expect(t, ctx, st, statusHit, 200, "v2")
}

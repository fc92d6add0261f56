package httpcache

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// clock is an injectable time source that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) httpDate(offset time.Duration) string {
	return string(fasthttp.AppendHTTPDate(nil, c.Now().Add(offset)))
}

// origin is a fake upstream: it counts calls, remembers the last request's
// header and answers with handle.
type origin struct {
	calls  atomic.Int64
	mu     sync.Mutex
	last   fasthttp.RequestHeader
	handle func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error
}

func (o *origin) fetch(req *fasthttp.Request, resp *fasthttp.Response) error {
	n := o.calls.Add(1)
	o.mu.Lock()
	req.Header.CopyTo(&o.last)
	o.mu.Unlock()
	return o.handle(n, req, resp)
}

// lastHeader is a field of the last request the origin got.
func (o *origin) lastHeader(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.last.Peek(name))
}

func (o *origin) lastMethod() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.last.Method())
}

// static answers every request with the same status, body and fields.
func static(code int, body string, kv ...string) func(int64, *fasthttp.Request, *fasthttp.Response) error {
	return func(_ int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		reply(resp, code, body, kv...)
		return nil
	}
}

// versioned answers with body "v<n>" for the n-th call, and the given fields.
func versioned(kv ...string) func(int64, *fasthttp.Request, *fasthttp.Response) error {
	return func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		reply(resp, 200, "v"+strconv.FormatInt(n, 10), kv...)
		return nil
	}
}

func reply(resp *fasthttp.Response, code int, body string, kv ...string) {
	resp.SetStatusCode(code)
	for i := 0; i+1 < len(kv); i += 2 {
		resp.Header.Add(kv[i], kv[i+1])
	}
	if body != "" {
		resp.SetBodyString(body)
	}
}

func newTestCache(tb testing.TB, mutate func(*Config)) (*Cache, *clock) {
	tb.Helper()
	clk := newClock()
	cfg := DefaultConfig()
	cfg.Now = clk.Now
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	c := New(cfg)
	tb.Cleanup(c.wait)
	return c, clk
}

// do sends one request through c and returns the context and Cache-Status.
func do(tb testing.TB, c *Cache, fetch Fetch, method, url string, kv ...string) (*fasthttp.RequestCtx, string) {
	tb.Helper()
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(url)
	for i := 0; i+1 < len(kv); i += 2 {
		ctx.Request.Header.Add(kv[i], kv[i+1])
	}
	status := c.Serve(ctx, fetch)
	if got := string(ctx.Response.Header.Peek(HeaderCacheStatus)); got != status && !hasSuffix(got, ", "+status) {
		tb.Fatalf("Cache-Status field %q, Serve returned %q", got, status)
	}
	return ctx, status
}

func get(tb testing.TB, c *Cache, fetch Fetch, url string, kv ...string) (*fasthttp.RequestCtx, string) {
	tb.Helper()
	return do(tb, c, fetch, fasthttp.MethodGet, url, kv...)
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

// bodyOf reads the response body as the client would get it, stream or not.
func bodyOf(tb testing.TB, ctx *fasthttp.RequestCtx) string {
	tb.Helper()
	resp := &ctx.Response
	if s := resp.BodyStream(); s != nil {
		b, err := io.ReadAll(s)
		if err != nil {
			tb.Fatalf("reading body stream: %v", err)
		}
		if err := resp.CloseBodyStream(); err != nil {
			tb.Fatalf("closing body stream: %v", err)
		}
		return string(b)
	}
	return string(resp.Body())
}

// expect checks one exchange: Cache-Status, status code and body.
func expect(tb testing.TB, ctx *fasthttp.RequestCtx, status, wantStatus string, wantCode int, wantBody string) {
	tb.Helper()
	if status != wantStatus {
		tb.Errorf("Cache-Status %q, want %q", status, wantStatus)
	}
	if code := ctx.Response.StatusCode(); code != wantCode {
		tb.Errorf("status code %d, want %d", code, wantCode)
	}
	if body := bodyOf(tb, ctx); body != wantBody {
		tb.Errorf("body %q, want %q", body, wantBody)
	}
}

func header(ctx *fasthttp.RequestCtx, name string) string {
	return string(ctx.Response.Header.Peek(name))
}

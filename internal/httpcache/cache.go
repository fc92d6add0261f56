package httpcache

import (
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/singleflight"
)

// Fetch sends req upstream and fills resp: it is the gateway's forward path, and
// the response body may be a stream (fasthttp's StreamResponseBody), which the
// cache reads or hands on and always closes.
//
// Fetch returns an error only when it has no response at all; the cache then
// answers 502 Bad Gateway, or a stale response where stale-if-error allows. A
// fetch that wants the client to see a particular error response writes it to
// resp and returns nil.
//
// Fetch must be safe for concurrent use, and must not hold on to the
// fasthttp.RequestCtx of the Serve call it was passed to: the cache may call it
// after Serve has returned, from another goroutine, with a copy of the request,
// to refresh a response served under stale-while-revalidate.
type Fetch func(req *fasthttp.Request, resp *fasthttp.Response) error

// Cache is a shared HTTP cache for the gateway. It is safe for concurrent use.
type Cache struct {
	cfg    Config
	store  *store
	flight singleflight.Group
	bg     sync.WaitGroup // background revalidations

	hits, misses, collapsed, stale, revalidations, bypasses atomic.Uint64
}

// New returns an empty cache. It takes ownership of cfg; zero or invalid fields
// get their defaults (see Config.Validate to reject them instead).
func New(cfg Config) *Cache {
	cfg = cfg.withDefaults()
	return &Cache{cfg: cfg, store: newStore(cfg.MaxBytes)}
}

// Stats are the cache's counters since New, and its current size, for metrics.
type Stats struct {
	Hits          uint64 // answered from the cache without forwarding, fresh or stale
	Misses        uint64 // cacheable requests forwarded: nothing usable stored, or a validation
	Collapsed     uint64 // requests answered with the upstream response another request fetched
	Stale         uint64 // stale responses served (stale-while-revalidate, stale-if-error, max-stale)
	Revalidations uint64 // conditional requests sent upstream for stored responses
	Bypasses      uint64 // requests passed straight on: other methods, no-store, Range, preconditions
	Stores        uint64 // responses stored, including refreshed ones
	Evictions     uint64 // responses dropped to stay within MaxBytes
	Bytes         int64  // accounted size now, at most MaxBytes
	Objects       int64  // responses stored now
}

// Stats returns the counters and the current size.
func (c *Cache) Stats() Stats {
	st := Stats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		Collapsed:     c.collapsed.Load(),
		Stale:         c.stale.Load(),
		Revalidations: c.revalidations.Load(),
		Bypasses:      c.bypasses.Load(),
	}
	s := c.store
	s.mu.Lock()
	st.Stores, st.Evictions, st.Bytes, st.Objects = s.stores, s.evictions, s.bytes, s.objects
	s.mu.Unlock()
	return st
}

// Purge drops every stored response whose key starts with prefix and returns how
// many it dropped. A key is the request's host followed by its request URI, as in
// "shop.example.com/static/app.js?v=3"; the empty prefix purges everything.
func (c *Cache) Purge(prefix string) int { return c.store.purge(prefix) }

// Serve answers ctx from the cache or through fetch, stores what may be stored,
// and sets the Cache-Status response field, returning the member it added (for
// example "wolke; hit", "wolke; fwd=miss; stored" or "wolke; fwd=stale;
// fwd-status=304"). It replaces whatever ctx.Response held.
//
// Requests the cache does not handle go straight to fetch: methods other than
// GET and HEAD (a successful unsafe one invalidates what is stored for its URI),
// requests with Cache-Control: no-store, Range, If-Match, If-Unmodified-Since or
// If-Range. A request with Authorization is answered from the cache only with a
// fresh response the origin declared public (or gave s-maxage), and its own
// response is stored only when RFC 9111 §3.5 allows.
func (c *Cache) Serve(ctx *fasthttp.RequestCtx, fetch Fetch) (status string) {
	req := &ctx.Request
	get := req.Header.IsGet()
	if !get && !req.Header.IsHead() {
		return c.serveUnsafe(ctx, fetch)
	}
	ri := scanRequest(&req.Header)
	if ri.cc.noStore || ri.bypass || (ri.auth && !get) {
		c.bypasses.Add(1)
		c.passthrough(ctx, fetch)
		return setStatus(&ctx.Response, statusBypass)
	}
	var kb [256]byte
	key := appendKey(kb[:0], req)
	if ri.auth {
		// RFC 9111 §3.5 forbids reusing what an authorized request fetched unless the
		// origin allowed it; it does not forbid answering an authorized request with
		// what the origin declared public. The gateway verified the credentials before
		// the cache is asked, so a fresh public response serves it.
		now := c.cfg.Now()
		if e, _, _ := c.store.lookup(key, &req.Header); e != nil && e.shared && judge(e, &ri, now) == useFresh {
			c.hits.Add(1)
			serveEntry(ctx, e, &ri, now)
			return setEntryStatus(&ctx.Response, e, statusHit)
		}
		c.misses.Add(1)
		return c.answer(ctx, c.exchange(req, fetch, string(key), nil, true), &ri, fwdRequest, notCollapsed)
	}

	now := c.cfg.Now()
	e, res, vkey := c.store.lookup(key, &req.Header)
	fwd := fwdMiss
	switch {
	case e != nil:
		switch judge(e, &ri, now) {
		case useFresh:
			c.hits.Add(1)
			serveEntry(ctx, e, &ri, now)
			return setEntryStatus(&ctx.Response, e, statusHit)
		case useMaxStale:
			c.hits.Add(1)
			c.stale.Add(1)
			serveEntry(ctx, e, &ri, now)
			return setEntryStatus(&ctx.Response, e, statusHitMaxStale)
		case useSWR:
			c.hits.Add(1)
			c.stale.Add(1)
			serveEntry(ctx, e, &ri, now)
			c.refreshInBackground(req, e, fetch)
			return setEntryStatus(&ctx.Response, e, statusHitSWR)
		}
		fwd = fwdStale
		if !e.noCache && e.age(now) < e.lifetime {
			fwd = fwdRequest
		}
		vkey = e.vkey
	case res == varyMiss:
		fwd = fwdVaryMiss
	}
	if ri.cc.onlyIfCached {
		gatewayTimeout(&ctx.Response)
		return setStatus(&ctx.Response, statusOnlyIfCache)
	}

	c.misses.Add(1)
	switch {
	case !get:
		// HEAD is answered from stored GET responses, but never fetches one.
		c.passthrough(ctx, fetch)
		return setStatus(&ctx.Response, forwardStatus(fwd, 0, false, notCollapsed, ""))
	case e == nil && (res == passMiss || ri.conditional()):
		// Collapsing would only make these wait: the last response here was not
		// storable, or the client's own conditional goes upstream and a 304 for
		// it could not be shared.
		return c.answer(ctx, c.exchange(req, fetch, string(key), nil, false), &ri, fwd, notCollapsed)
	}
	return c.collapse(ctx, fetch, string(key), vkey, e, &ri, fwd)
}

// wait blocks until background revalidations are done (for tests).
func (c *Cache) wait() { c.bg.Wait() }

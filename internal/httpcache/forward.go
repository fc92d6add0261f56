package httpcache

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// how says what became of one upstream exchange.
type how uint8

const (
	fetched     how = iota // a complete response, e; stored unless it did not fit
	refreshed              // a 304 freshened the stale entry: e is the result
	servedStale            // the exchange failed and e, the stale entry, may answer (stale-if-error)
	passThrough            // not storable: up holds the response, for the leader only
	failed                 // no response at all
	already                // another flight stored a fresh e meanwhile
)

// flightResult is the outcome of an exchange, shared with collapsed requests
// through e; up and prefix are the leader's alone.
type flightResult struct {
	e         *entry
	how       how
	stored    bool
	fwdStatus int
	up        *fasthttp.Response
	prefix    []byte
	own       [][2][]byte // fields for the leader's client only (see ownFields)
}

// shareable reports whether collapsed requests may be answered with e: a
// response that was stored (so it may be given to anyone), or the stale one the
// cache would serve each of them.
func (r *flightResult) shareable() bool {
	return r.e != nil && (r.stored || r.how == servedStale || r.how == already)
}

// dispose releases a pass-through response nobody will deliver.
func (r *flightResult) dispose() {
	if r.up != nil {
		r.up.CloseBodyStream() //nolint:errcheck
		fasthttp.ReleaseResponse(r.up)
		r.up = nil
	}
}

func flightKey(key, vkey string) string {
	if vkey == "" {
		return key
	}
	return key + "\x00" + vkey
}

// collapse forwards a GET that found nothing usable, with concurrent requests
// for the same object waiting on one upstream exchange instead of each sending
// their own. The waiters get the stored response the first one fetched. When it
// turns out not storable (private, no-store, too large, an error...), it cannot
// be shared: each waiter then forwards its own request, and a pass marker makes
// later misses on the key skip collapsing until a storable response arrives.
func (c *Cache) collapse(ctx *fasthttp.RequestCtx, fetch Fetch, key, vkey string, stale *entry, ri *reqInfo, fwd string) string {
	req := &ctx.Request
	leader := false
	v, _, _ := c.flight.Do(flightKey(key, vkey), func() (any, error) {
		leader = true
		// A flight that ended between this request's lookup and now may have
		// stored what it needs.
		if e, _, _ := c.store.lookup([]byte(key), &req.Header); e != nil && e != stale && judge(e, ri, c.cfg.Now()) == useFresh {
			return &flightResult{e: e, how: already}, nil
		}
		return c.exchange(req, fetch, key, stale, false), nil
	})
	r, _ := v.(*flightResult)
	if r == nil { // fetch called runtime.Goexit
		r = &flightResult{how: failed}
	}
	if leader {
		if r.how == passThrough || r.how == failed {
			c.store.mark(key)
		}
		return c.answer(ctx, r, ri, fwd, notCollapsed)
	}
	if r.shareable() && r.e.vkey == string(appendVaryKey(nil, r.e.vary, &req.Header)) {
		c.collapsed.Add(1)
		shared := &flightResult{e: r.e, how: r.how, fwdStatus: r.fwdStatus}
		return c.answer(ctx, shared, ri, fwd, collapsedOK)
	}
	return c.answer(ctx, c.exchange(req, fetch, key, stale, false), ri, fwd, collapsedFailed)
}

// exchange sends req upstream and stores what may be stored. With a stale entry
// it sends a copy of req made conditional on the entry's validators, if it has
// any, and a 304 freshens the entry. auth: req carries Authorization.
func (c *Cache) exchange(req *fasthttp.Request, fetch Fetch, key string, stale *entry, auth bool) *flightResult {
	out, conditional := req, false
	if stale != nil {
		out = fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(out)
		req.CopyTo(out)
		out.Header.Del(fasthttp.HeaderIfNoneMatch)
		out.Header.Del(fasthttp.HeaderIfModifiedSince)
		if len(stale.etag) > 0 {
			out.Header.SetBytesV(fasthttp.HeaderIfNoneMatch, stale.etag)
			conditional = true
		}
		if stale.hasLastModified {
			out.Header.SetBytesV(fasthttp.HeaderIfModifiedSince, fasthttp.AppendHTTPDate(nil, stale.lastModified))
			conditional = true
		}
		if conditional {
			c.revalidations.Add(1)
		}
	}

	up := fasthttp.AcquireResponse()
	reqTime := c.cfg.Now()
	err := fetch(out, up)
	respTime := c.cfg.Now()
	if err != nil {
		up.CloseBodyStream() //nolint:errcheck
		fasthttp.ReleaseResponse(up)
		return c.failure(stale, respTime)
	}
	status := up.StatusCode()
	if stale != nil && errorStatus(status) && staleOnError(stale, respTime) {
		up.CloseBodyStream() //nolint:errcheck
		fasthttp.ReleaseResponse(up)
		return &flightResult{e: stale, how: servedStale, fwdStatus: status}
	}
	if status == fasthttp.StatusNotModified && conditional {
		if tag := up.Header.Peek(fasthttp.HeaderETag); len(tag) > 0 && !weakMatch(bytes.TrimSpace(tag), stale.etag) {
			// The 304 validates another response than the stored one (RFC 9111
			// §4.3.4), which then cannot be used: fetch it whole.
			fasthttp.ReleaseResponse(up)
			c.store.remove(stale)
			return c.exchange(req, fetch, key, nil, auth)
		}
		e, ok := c.freshened(stale, &up.Header, auth, reqTime, respTime)
		r := &flightResult{e: e, how: refreshed, fwdStatus: status, own: ownFields(&up.Header, nil)}
		fasthttp.ReleaseResponse(up)
		if ok {
			r.stored = c.store.insert(e)
		}
		if !r.stored {
			c.store.remove(stale)
		}
		return r
	}

	ri := readResponse(&up.Header)
	lifetime, ok := ri.storable(auth, respTime, c.cfg.DefaultTTL)
	if !ok {
		if stale != nil && status < 500 {
			c.store.remove(stale) // superseded by what cannot be stored
		}
		return &flightResult{how: passThrough, up: up}
	}
	body, err := readBody(up, c.cfg.MaxObjectSize)
	switch {
	case errors.Is(err, errTooLarge):
		if stale != nil {
			c.store.remove(stale)
		}
		return &flightResult{how: passThrough, up: up, prefix: body}
	case err != nil:
		up.CloseBodyStream() //nolint:errcheck
		fasthttp.ReleaseResponse(up)
		return c.failure(stale, c.cfg.Now())
	}
	e := newEntry(key, string(appendVaryKey(nil, ri.vary, &req.Header)), ri.vary, &up.Header, body,
		&ri, lifetime, reqTime, respTime)
	r := &flightResult{e: e, how: fetched}
	if ri.setCookie || len(ri.cc.noCacheFields)+len(ri.cc.privateFields) > 0 {
		r.own = ownFields(&up.Header, &ri.cc)
	}
	fasthttp.ReleaseResponse(up)
	if r.stored = c.store.insert(e); !r.stored && stale != nil {
		c.store.remove(stale)
	}
	return r
}

// ownFields copies the fields of h that a stored copy leaves out although the
// client whose request fetched the response gets them: Set-Cookie, and those
// named by a qualified no-cache or private (cc may be nil).
func ownFields(h *fasthttp.ResponseHeader, cc *directives) [][2][]byte {
	var own [][2][]byte
	for k, v := range h.All() {
		keep := eqFold(k, "set-cookie")
		if cc != nil {
			keep = keep || slices.ContainsFunc(cc.noCacheFields, func(n string) bool { return strings.EqualFold(n, string(k)) }) ||
				slices.ContainsFunc(cc.privateFields, func(n string) bool { return strings.EqualFold(n, string(k)) })
		}
		if keep {
			own = append(own, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
	}
	return own
}

// failure is the outcome of an exchange without a usable response.
func (c *Cache) failure(stale *entry, now time.Time) *flightResult {
	if stale != nil && staleOnError(stale, now) {
		return &flightResult{e: stale, how: servedStale}
	}
	return &flightResult{how: failed}
}

// answer responds to ctx with the outcome of an exchange and sets Cache-Status.
func (c *Cache) answer(ctx *fasthttp.RequestCtx, r *flightResult, ri *reqInfo, fwd string, collapsed int8) string {
	resp := &ctx.Response
	switch r.how {
	case already:
		serveEntry(ctx, r.e, ri, c.cfg.Now())
		return setStatus(resp, statusHit)
	case fetched, refreshed:
		serveEntry(ctx, r.e, ri, c.cfg.Now())
		for _, f := range r.own {
			resp.Header.AddBytesKV(f[0], f[1])
		}
		return setStatus(resp, forwardStatus(fwd, r.fwdStatus, r.stored, collapsed, ""))
	case servedStale:
		c.stale.Add(1)
		serveEntry(ctx, r.e, ri, c.cfg.Now())
		return setStatus(resp, forwardStatus(fwd, r.fwdStatus, false, collapsed, "stale-if-error"))
	case passThrough:
		deliver(resp, r.up, r.prefix)
		return setStatus(resp, forwardStatus(fwd, 0, false, collapsed, ""))
	}
	badGateway(resp)
	return setStatus(resp, forwardStatus(fwd, 0, false, collapsed, ""))
}

// refreshInBackground revalidates e, which was just served under
// stale-while-revalidate, once: further requests keep getting e until the refresh
// is done, and a foreground forward of the same object joins it.
func (c *Cache) refreshInBackground(req *fasthttp.Request, e *entry, fetch Fetch) {
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	bg := fasthttp.AcquireRequest()
	req.CopyTo(bg)
	bg.Header.SetMethod(fasthttp.MethodGet) // a HEAD may trigger it; entries are GET responses
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer fasthttp.ReleaseRequest(bg)
		leader := false
		v, _, _ := c.flight.Do(flightKey(e.key, e.vkey), func() (any, error) {
			leader = true
			return c.exchange(bg, fetch, e.key, e, false), nil
		})
		r, _ := v.(*flightResult)
		if r == nil {
			r = &flightResult{how: failed}
		}
		if leader {
			r.dispose()
		}
		if r.how != fetched && r.how != refreshed {
			e.refreshing.Store(false) // e stays; a later request may try again
		}
	}()
}

// passthrough forwards ctx without the cache.
func (c *Cache) passthrough(ctx *fasthttp.RequestCtx, fetch Fetch) {
	if err := fetch(&ctx.Request, &ctx.Response); err != nil {
		badGateway(&ctx.Response)
	}
}

// serveUnsafe forwards a request of another method than GET or HEAD. A
// non-error response to an unsafe one invalidates what is stored for its URI and
// for the same-host URIs in Location and Content-Location (RFC 9111 §4.4).
func (c *Cache) serveUnsafe(ctx *fasthttp.RequestCtx, fetch Fetch) string {
	c.bypasses.Add(1)
	c.passthrough(ctx, fetch)
	switch string(ctx.Request.Header.Method()) {
	case fasthttp.MethodOptions, fasthttp.MethodTrace:
	default:
		if code := ctx.Response.StatusCode(); code >= 200 && code < 400 {
			var kb [256]byte
			c.store.removeKey(string(appendKey(kb[:0], &ctx.Request)))
			host := ctx.Request.URI().Host()
			for _, name := range [...]string{fasthttp.HeaderLocation, fasthttp.HeaderContentLocation} {
				if k, ok := sameHostKey(host, ctx.Response.Header.Peek(name)); ok {
					c.store.removeKey(k)
				}
			}
		}
	}
	return setStatus(&ctx.Response, statusMethod)
}

// sameHostKey returns the cache key of a URI reference that is on host: an
// absolute path, or an http(s) URI naming host.
func sameHostKey(host, ref []byte) (string, bool) {
	if len(ref) > 0 && ref[0] == '/' && (len(ref) == 1 || ref[1] != '/') {
		return string(host) + string(ref), true
	}
	for _, scheme := range [...]string{"http://", "https://"} {
		rest, ok := bytes.CutPrefix(ref, []byte(scheme))
		if !ok || len(rest) < len(host) || !bytes.EqualFold(rest[:len(host)], host) {
			continue
		}
		rest = rest[len(host):]
		switch {
		case len(rest) == 0:
			return string(host) + "/", true
		case rest[0] == '/':
			return string(host) + string(rest), true
		case rest[0] == '?':
			return string(host) + "/" + string(rest), true
		}
	}
	return "", false
}

package httpcache

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// entryOverhead is what an object costs beyond its keys, header and body: the
// entry itself and the slices of its parsed header.
const entryOverhead = 512

// entry is one stored response, or a pass marker. Everything except the LRU
// links (guarded by Cache.mu) and refreshing is set before the entry is published
// and never changed: a refresh stores a new entry. The stored header is only ever
// read with CopyTo afterwards, since fasthttp's Peek writes to scratch fields.
type entry struct {
	key  string   // primary key: host + request URI
	vkey string   // secondary key: the request's values of the fields in vary
	vary []string // the response's Vary field names, canonical

	header fasthttp.ResponseHeader // status line and stored fields
	body   []byte
	status int

	etag            []byte
	lastModified    time.Time
	hasLastModified bool
	date            time.Time // Date, or the response time when absent

	responseTime time.Time
	initialAge   time.Duration // corrected_initial_age, RFC 9111 §4.2.3
	lifetime     time.Duration // freshness lifetime, RFC 9111 §4.2.1
	swr, sie     time.Duration // stale-while-revalidate and stale-if-error windows

	noCache        bool // validate before every use
	mustRevalidate bool // must-revalidate or proxy-revalidate: never used stale
	sMaxAge        bool // s-maxage given, which implies proxy-revalidate for clients' max-stale
	// shared: the origin said public or s-maxage, explicit consent to a shared
	// cache, so the response may also answer requests with Authorization (which the
	// gateway has checked before asking the cache).
	shared         bool
	hasCacheStatus bool // the stored header has upstream Cache-Status members

	// marker entries hold no response: they remember that the last miss on key
	// was not storable, so that misses there are not collapsed behind one
	// another (Varnish calls it hit-for-miss).
	marker bool

	size       int64
	prev, next *entry

	refreshing atomic.Bool // a background revalidation is under way
}

func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.responseTime))
}

func (e *entry) hasValidator() bool { return len(e.etag) > 0 || e.hasLastModified }

// respInfo is what the cache reads from a response header.
type respInfo struct {
	status     int
	cc         directives
	date       time.Time
	hasDate    bool
	expires    time.Time
	hasExpires bool
	badExpires bool
	age        int64
	etag       []byte
	lastMod    time.Time
	hasLastMod bool
	vary       []string
	varyStar   bool
	setCookie  bool
}

// readResponse reads h, which the caller owns (see entry on why).
func readResponse(h *fasthttp.ResponseHeader) respInfo {
	ri := respInfo{status: h.StatusCode(), cc: newDirectives(), age: absent}
	for k, v := range h.All() {
		switch {
		case eqFold(k, "cache-control"):
			ri.cc.parse(v, true)
		case eqFold(k, "date"):
			if !ri.hasDate {
				ri.date, ri.hasDate = parseDate(v)
			}
		case eqFold(k, "expires"):
			if !ri.hasExpires && !ri.badExpires {
				ri.expires, ri.hasExpires = parseDate(v)
				ri.badExpires = !ri.hasExpires
			}
		case eqFold(k, "age"):
			if ri.age == absent {
				ri.age = parseDelta(trimOWS(v))
			}
		case eqFold(k, "etag"):
			if ri.etag == nil {
				ri.etag = append([]byte{}, trimOWS(v)...)
			}
		case eqFold(k, "last-modified"):
			if !ri.hasLastMod {
				ri.lastMod, ri.hasLastMod = parseDate(v)
			}
		case eqFold(k, "vary"):
			var star bool
			ri.vary, star = parseVary(ri.vary, v)
			ri.varyStar = ri.varyStar || star
		case eqFold(k, "set-cookie"):
			ri.setCookie = true
		}
	}
	return ri
}

func parseDate(v []byte) (time.Time, bool) {
	t, err := fasthttp.ParseHTTPDate(trimOWS(v))
	return t, err == nil
}

// heuristicStatus: the status codes RFC 9110 §15.1 defines as heuristically
// cacheable, which may be stored without explicit freshness.
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus: the final status codes the cache stores when a response's
// freshness is explicit. 206 is left out since the cache does not combine ranges.
func understoodStatus(code int) bool {
	return heuristicStatus(code) || code == 302 || code == 307
}

// errorStatus: the responses RFC 5861 §4 counts as errors for stale-if-error.
func errorStatus(code int) bool {
	return code == 500 || code == 502 || code == 503 || code == 504
}

// freshness returns a response's freshness lifetime for a shared cache (RFC 9111
// §4.2.1) and whether it has one at all.
func (ri *respInfo) freshness(respTime time.Time, heuristic time.Duration) (time.Duration, bool) {
	switch {
	case ri.cc.sMaxAge != absent:
		return time.Duration(ri.cc.sMaxAge) * time.Second, true
	case ri.cc.maxAge != absent:
		return time.Duration(ri.cc.maxAge) * time.Second, true
	case ri.badExpires:
		return 0, true // an invalid Expires means already expired
	case ri.hasExpires:
		date := respTime
		if ri.hasDate {
			date = ri.date
		}
		return max(0, ri.expires.Sub(date)), true
	case heuristic > 0 && (heuristicStatus(ri.status) || ri.cc.public):
		return heuristic, true
	}
	return 0, false
}

// storable decides whether a response to a GET may be stored (RFC 9111 §3) and
// is worth storing, and returns its freshness lifetime. auth tells whether the
// request carried Authorization.
func (ri *respInfo) storable(auth bool, respTime time.Time, heuristic time.Duration) (time.Duration, bool) {
	cc := &ri.cc
	if !understoodStatus(ri.status) || cc.noStore || cc.private || ri.varyStar {
		return 0, false
	}
	if auth && !cc.public && cc.sMaxAge == absent && !cc.mustRevalidate {
		return 0, false // RFC 9111 §3.5
	}
	// One user's cookie must not be handed to everyone else: only an origin that
	// said the response is public, or named Set-Cookie in a qualified no-cache or
	// private, gets it stored, and then without the field.
	if ri.setCookie && !cc.public && !slices.Contains(cc.noCacheFields, "Set-Cookie") &&
		!slices.Contains(cc.privateFields, "Set-Cookie") {
		return 0, false
	}
	lifetime, ok := ri.freshness(respTime, heuristic)
	if !ok && !cc.noCache {
		return 0, false
	}
	if !ok && !heuristicStatus(ri.status) {
		return 0, false
	}
	// A response that is stale from the start is only worth keeping if it can be
	// revalidated cheaply or served stale.
	validator := len(ri.etag) > 0 || ri.hasLastMod
	if lifetime == 0 || cc.noCache {
		stale := !cc.noCache && !cc.mustRevalidate && !cc.proxyRevalidate &&
			(cc.staleIfError > 0 || cc.staleWhileRevalidate > 0)
		if !validator && !stale {
			return 0, false
		}
	}
	return lifetime, true
}

// initialAge is corrected_initial_age of RFC 9111 §4.2.3.
func (ri *respInfo) initialAge(reqTime, respTime time.Time) time.Duration {
	date := respTime
	if ri.hasDate {
		date = ri.date
	}
	apparent := max(0, respTime.Sub(date))
	corrected := respTime.Sub(reqTime)
	if ri.age != absent {
		corrected += time.Duration(ri.age) * time.Second
	}
	return max(apparent, corrected)
}

// hopFields are never stored (RFC 9111 §3.1); Age is recomputed on every use.
var hopFields = []string{
	"Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization", "Age",
}

// stripStored removes from h what a stored response must not keep.
func stripStored(h *fasthttp.ResponseHeader, cc *directives) {
	var named []string
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		named = appendFieldNames(named, v)
	}
	for _, name := range named {
		h.Del(name)
	}
	h.Del(fasthttp.HeaderConnection)
	h.ResetConnectionClose()
	for _, name := range hopFields {
		h.Del(name)
	}
	if len(h.Peek(fasthttp.HeaderTrailer)) > 0 {
		h.Del(fasthttp.HeaderTrailer)
	}
	h.DelAllCookies()
	for _, name := range cc.noCacheFields {
		h.Del(name)
	}
	for _, name := range cc.privateFields {
		h.Del(name)
	}
}

// newEntry builds an unpublished entry from a response header h (which it copies)
// and body (which it keeps).
func newEntry(key, vkey string, vary []string, h *fasthttp.ResponseHeader, body []byte,
	ri *respInfo, lifetime time.Duration, reqTime, respTime time.Time,
) *entry {
	e := &entry{
		key: key, vkey: vkey, vary: vary,
		body: body, status: ri.status,
		etag: ri.etag, lastModified: ri.lastMod, hasLastModified: ri.hasLastMod,
		date:         respTime,
		responseTime: respTime,
		initialAge:   ri.initialAge(reqTime, respTime),
		lifetime:     lifetime,
		noCache:      ri.cc.noCache,
		// s-maxage implies proxy-revalidate (RFC 9111 §5.2.2.10); the explicit
		// RFC 5861 windows still apply to it, as CDNs do with
		// "s-maxage=1, stale-while-revalidate=59".
		mustRevalidate: ri.cc.mustRevalidate || ri.cc.proxyRevalidate,
		sMaxAge:        ri.cc.sMaxAge != absent,
		shared:         ri.cc.public || ri.cc.sMaxAge != absent,
	}
	if ri.hasDate {
		e.date = ri.date
	}
	if ri.cc.staleWhileRevalidate > 0 {
		e.swr = time.Duration(ri.cc.staleWhileRevalidate) * time.Second
	}
	if ri.cc.staleIfError > 0 {
		e.sie = time.Duration(ri.cc.staleIfError) * time.Second
	}
	h.CopyTo(&e.header)
	stripStored(&e.header, &ri.cc)
	e.header.SetContentLength(len(body))
	e.size = int64(len(key)+len(vkey)+len(body)) + entryOverhead
	for k, v := range e.header.All() {
		e.size += int64(len(k) + len(v) + 4)
		e.hasCacheStatus = e.hasCacheStatus || eqFold(k, "cache-status")
	}
	return e
}

// notModifiedExcluded are the fields of a 304 that do not update a stored
// response: they describe the (absent) body or are fasthttp defaults.
var notModifiedExcluded = []string{
	fasthttp.HeaderContentLength, fasthttp.HeaderContentType, fasthttp.HeaderContentEncoding,
	fasthttp.HeaderContentRange, fasthttp.HeaderTransferEncoding, fasthttp.HeaderSetCookie,
	fasthttp.HeaderServer,
}

// freshened returns old updated with the fields of a 304 response nm (RFC 9111
// §3.2, §4.3.4), the ones it carries replacing the stored ones. The result is a
// new unpublished entry sharing old's body, and whether it may still be stored.
func (c *Cache) freshened(old *entry, nm *fasthttp.ResponseHeader, auth bool, reqTime, respTime time.Time) (*entry, bool) {
	var h fasthttp.ResponseHeader
	old.header.CopyTo(&h)
	var names []string
	for k := range nm.All() {
		name := string(k)
		if !slices.Contains(notModifiedExcluded, name) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		h.Del(name)
	}
	for k, v := range nm.All() {
		if slices.Contains(names, string(k)) {
			h.AddBytesKV(k, v)
		}
	}
	ri := readResponse(&h)
	lifetime, ok := ri.storable(auth, respTime, c.cfg.DefaultTTL)
	if !ok {
		lifetime, _ = ri.freshness(respTime, c.cfg.DefaultTTL)
	}
	return newEntry(old.key, old.vkey, old.vary, &h, old.body, &ri, lifetime, reqTime, respTime), ok
}

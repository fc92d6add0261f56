package httpcache

import (
	"time"

	"github.com/valyala/fasthttp"
)

// reqInfo is what the cache reads from a request header, in one pass.
type reqInfo struct {
	cc            directives
	hasCC         bool
	pragmaNoCache bool
	auth          bool // Authorization: responses stored only as RFC 9111 §3.5 allows
	bypass        bool // Range or a precondition the cache does not evaluate
	inm, ims      []byte
}

// requestFields are the request fields the cache reads.
var requestFields = [...]string{
	fasthttp.HeaderCacheControl, fasthttp.HeaderPragma, fasthttp.HeaderAuthorization,
	fasthttp.HeaderIfNoneMatch, fasthttp.HeaderIfModifiedSince, fasthttp.HeaderRange,
	fasthttp.HeaderIfMatch, fasthttp.HeaderIfRange, fasthttp.HeaderIfUnmodifiedSince,
}

// scanRequest reads h. The conditional values it keeps alias h's storage.
//
// One pass over all fields is the cheapest, but fasthttp's iteration parses the
// cookies (to re-serialize them when the request is forwarded): a request with
// cookies has its fields looked up one by one instead, leaving them untouched.
func scanRequest(h *fasthttp.RequestHeader) reqInfo {
	ri := reqInfo{cc: newDirectives()}
	if h.Peek(fasthttp.HeaderCookie) == nil {
		for k, v := range h.All() {
			ri.field(k, v)
		}
	} else {
		for _, name := range requestFields {
			for _, v := range h.PeekAll(name) {
				ri.field([]byte(name), v)
			}
		}
	}
	if ri.hasCC {
		ri.pragmaNoCache = false // Pragma counts only without Cache-Control (RFC 7234 §5.4)
	}
	return ri
}

// field reads one request field.
func (ri *reqInfo) field(k, v []byte) {
	switch len(k) { // cheap rejection: most fields are none of these
	case 5, 6, 8, 13, 17, 19:
	default:
		return
	}
	switch {
	case eqFold(k, "cache-control"):
		ri.hasCC = true
		ri.cc.parse(v, false)
	case eqFold(k, "pragma"):
		ri.pragmaNoCache = ri.pragmaNoCache || hasToken(v, "no-cache")
	case eqFold(k, "authorization"):
		ri.auth = true
	case eqFold(k, "if-none-match"):
		if ri.inm == nil {
			ri.inm = v
		}
	case eqFold(k, "if-modified-since"):
		if ri.ims == nil {
			ri.ims = v
		}
	case eqFold(k, "range"), eqFold(k, "if-match"), eqFold(k, "if-range"), eqFold(k, "if-unmodified-since"):
		ri.bypass = true
	}
}

// noCache: the client wants a stored response validated before use.
func (ri *reqInfo) noCache() bool { return ri.cc.noCache || ri.pragmaNoCache }

func (ri *reqInfo) conditional() bool { return ri.inm != nil || ri.ims != nil }

// appendKey appends the primary cache key of req: host and request URI. The
// method is not part of it, so HEAD is answered from a stored GET response.
func appendKey(dst []byte, req *fasthttp.Request) []byte {
	u := req.URI()
	dst = append(dst, u.Host()...)
	return append(dst, u.RequestURI()...)
}

// verdict is what may be done with a stored response for one request.
type verdict uint8

const (
	useFresh    verdict = iota // fresh, and the request accepts it
	useMaxStale                // stale, within the request's max-stale
	useSWR                     // stale, within stale-while-revalidate: serve and refresh
	forward                    // validate or replace it upstream first
)

// judge applies RFC 9111 §4.2 and §5.2.1 to e for a request.
func judge(e *entry, ri *reqInfo, now time.Time) verdict {
	if e.noCache || ri.noCache() {
		return forward
	}
	age := e.age(now)
	if age < e.lifetime {
		if ri.cc.maxAge != absent && age > seconds(ri.cc.maxAge) {
			return forward
		}
		if ri.cc.minFresh != absent && e.lifetime-age < seconds(ri.cc.minFresh) {
			return forward
		}
		return useFresh
	}
	if e.mustRevalidate {
		return forward
	}
	staleness := age - e.lifetime
	if ri.cc.maxStale != absent && !e.sMaxAge && staleness <= seconds(ri.cc.maxStale) &&
		(ri.cc.maxAge == absent || age <= seconds(ri.cc.maxAge)) {
		return useMaxStale
	}
	if e.swr > 0 && staleness < e.swr && ri.cc.maxAge == absent && ri.cc.minFresh == absent {
		return useSWR
	}
	return forward
}

// staleOnError reports whether e may answer a request whose forward failed:
// within its stale-if-error window, and not forbidden to be served stale.
func staleOnError(e *entry, now time.Time) bool {
	return e.sie > 0 && !e.noCache && !e.mustRevalidate && e.age(now)-e.lifetime <= e.sie
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

package httpcache

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// HeaderCacheStatus is the RFC 9211 response field the cache sets.
const HeaderCacheStatus = "Cache-Status"

// Name is the cache's name in Cache-Status.
const Name = "wolke"

// Cache-Status values that need no formatting.
const (
	statusHit         = Name + "; hit"
	statusHitSWR      = Name + "; hit; detail=stale-while-revalidate"
	statusHitMaxStale = Name + "; hit; detail=max-stale"
	statusMethod      = Name + "; fwd=method"
	statusBypass      = Name + "; fwd=bypass"
	statusOnlyIfCache = Name + "; detail=only-if-cached"
)

// Values of the fwd parameter (RFC 9211 §2.2).
const (
	fwdMiss     = "miss"      // nothing stored for the URI
	fwdVaryMiss = "vary-miss" // responses for the URI, none for the request's Vary'd fields
	fwdStale    = "stale"     // a stored response, stale or marked no-cache
	fwdRequest  = "request"   // a fresh stored response the request would not take
)

// collapsed parameter: none, reused another request's response, or had to
// forward after all.
const (
	notCollapsed int8 = iota
	collapsedOK
	collapsedFailed
)

// forwardStatus formats the Cache-Status of a forwarded request. fwdStatus is 0
// when the client got the upstream status (RFC 9211 then omits it).
func forwardStatus(fwd string, fwdStatus int, stored bool, collapsed int8, detail string) string {
	b := make([]byte, 0, 80)
	b = append(b, Name+"; fwd="...)
	b = append(b, fwd...)
	if fwdStatus != 0 {
		b = append(b, "; fwd-status="...)
		b = strconv.AppendInt(b, int64(fwdStatus), 10)
	}
	if stored {
		b = append(b, "; stored"...)
	}
	switch collapsed {
	case collapsedOK:
		b = append(b, "; collapsed"...)
	case collapsedFailed:
		b = append(b, "; collapsed=?0"...)
	}
	if detail != "" {
		b = append(b, "; detail="...)
		b = append(b, detail...)
	}
	return string(b)
}

var hdrCacheStatus = []byte(HeaderCacheStatus)

// setEntryStatus is setStatus for a response just served from e, which knows
// whether there are upstream members to keep.
func setEntryStatus(resp *fasthttp.Response, e *entry, status string) string {
	if e.hasCacheStatus {
		return setStatus(resp, status)
	}
	resp.Header.SetCanonical(hdrCacheStatus, []byte(status))
	return status
}

// setStatus sets the cache's Cache-Status member on resp, after those of caches
// upstream (RFC 9211 §2: they are kept, nearest the origin first), and returns it.
func setStatus(resp *fasthttp.Response, status string) string {
	if prev := resp.Header.Peek(HeaderCacheStatus); len(prev) > 0 {
		v := make([]byte, 0, len(prev)+2+len(status))
		v = append(append(append(v, prev...), ", "...), status...)
		resp.Header.SetBytesV(HeaderCacheStatus, v)
		return status
	}
	resp.Header.Set(HeaderCacheStatus, status)
	return status
}

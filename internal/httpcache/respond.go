package httpcache

import (
	"bytes"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

var hdrAge = []byte(fasthttp.HeaderAge)

// serveEntry answers ctx with e: the stored response with its current Age, or a
// 304 when the client's own conditional matches it (RFC 9111 §4.3.2). It replaces
// whatever ctx.Response held.
func serveEntry(ctx *fasthttp.RequestCtx, e *entry, ri *reqInfo, now time.Time) {
	resp := &ctx.Response
	e.header.CopyTo(&resp.Header)
	switch {
	case notModified(e, ri):
		resp.ResetBody()
		resp.SetStatusCode(fasthttp.StatusNotModified)
	case len(e.body) == 0:
		resp.ResetBody()
	default:
		resp.SetBodyRaw(e.body[:len(e.body):len(e.body)])
	}
	if ctx.Request.Header.IsHead() {
		resp.SkipBody = true
	}
	var buf [20]byte
	resp.Header.SetCanonical(hdrAge, strconv.AppendInt(buf[:0], int64(e.age(now)/time.Second), 10))
}

// notModified evaluates the client's If-None-Match, or failing that its
// If-Modified-Since, against e (RFC 9110 §13.2.2).
func notModified(e *entry, ri *reqInfo) bool {
	if e.status != fasthttp.StatusOK {
		return false
	}
	if ri.inm != nil {
		return etagListMatch(ri.inm, e.etag)
	}
	if ri.ims != nil {
		ims, ok := parseDate(ri.ims)
		if !ok {
			return false
		}
		lm := e.date
		if e.hasLastModified {
			lm = e.lastModified
		}
		return !lm.After(ims)
	}
	return false
}

// etagListMatch: does an If-None-Match list hold "*" or an entity tag that
// weakly matches etag (RFC 9110 §8.8.3.2)?
func etagListMatch(list, etag []byte) bool {
	for len(list) > 0 {
		var item []byte
		item, list = nextItem(list)
		item = trimOWS(item)
		if len(item) == 1 && item[0] == '*' {
			return true
		}
		if len(etag) > 0 && weakMatch(item, etag) {
			return true
		}
	}
	return false
}

func weakMatch(a, b []byte) bool {
	return len(a) > 0 && bytes.Equal(bytes.TrimPrefix(a, []byte("W/")), bytes.TrimPrefix(b, []byte("W/")))
}

// deliver answers resp with up, a response that was not stored. A body stream is
// handed on, behind the prefix already read from it; up then belongs to resp's
// stream and is not released.
func deliver(resp *fasthttp.Response, up *fasthttp.Response, prefix []byte) {
	up.Header.CopyTo(&resp.Header)
	resp.Header.ResetConnectionClose()
	if stream := up.BodyStream(); stream != nil {
		cl := up.Header.ContentLength()
		if cl < 0 {
			cl = -1
		}
		resp.SetBodyStream(&stitched{prefix: prefix, rest: stream, up: up}, cl)
		return
	}
	resp.SetBody(up.Body())
	fasthttp.ReleaseResponse(up)
}

func badGateway(resp *fasthttp.Response) {
	resp.CloseBodyStream() //nolint:errcheck
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusBadGateway)
}

func gatewayTimeout(resp *fasthttp.Response) {
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusGatewayTimeout)
}

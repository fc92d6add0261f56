package httpapi

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// gzipMinSize is the smallest JSON answer sent compressed, Consul's threshold (its
// HTTP handlers sit behind gziphandler with DefaultMinSize, 1400 bytes: below that a
// compressed answer saves less than a packet). Go clients, consul/api among them,
// ask for gzip and decompress without being told; curl does with --compressed.
const gzipMinSize = 1400

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// gzipBytes compresses b at the fastest level.
func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	zw.Write(b)
	zw.Close()
	gzipWriters.Put(zw)
	return buf.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip: listed as
// gzip (or x-gzip) or *, without q=0.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(q), 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// Shared header values (see headerTrue).
var (
	headerJSON           = []string{"application/json"}
	headerAcceptEncoding = []string{"Accept-Encoding"}
	headerGzip           = []string{"gzip"}
)

// writeJSONBody answers body as JSON, compressed when the client accepts gzip and it
// is big enough. zipped, when not nil, is body already compressed (a shared answer
// compressed once for all its readers).
func writeJSONBody(w http.ResponseWriter, body, zipped []byte) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	if len(body) >= gzipMinSize {
		h["Vary"] = headerAcceptEncoding
		if wantsGzip(w) {
			if zipped == nil {
				zipped = gzipBytes(body)
			}
			h["Content-Encoding"] = headerGzip
			body = zipped
		}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.Write(body)
}

// wantsGzip reports whether the client behind w accepts gzip.
func wantsGzip(w http.ResponseWriter) bool {
	sw, ok := w.(*statusWriter)
	return ok && sw.gzip
}

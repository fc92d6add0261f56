package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// The API's HTTP/1.1 listener is served by fasthttp, and every request is handed to
// the same net/http handlers that serve HTTP/2 and requests forwarded between agents.
// net/http spends about 8 µs of CPU more per request on this machine than fasthttp
// (measured with a trivial handler under wrk: 22–27 against 15–17 µs), mostly in the
// goroutine it starts on every request to notice a client hanging up and in
// per-request buffers; on a KV write that is over a tenth of the server's CPU. The
// conversion below is synchronous (no goroutine per request, unlike fasthttpadaptor)
// and keeps net/http's semantics where the handlers rely on them: the parsed URL and
// query exactly as net/http parses them, canonical header names, the Content-Type
// sniffing of an answer without one, and a context that ends when a client hangs up
// during a blocking query.

// fastBufferedBody is the largest request body fasthttp reads whole before it calls
// the handler; a larger one (a snapshot being restored) is read by the handler as it
// arrives, and every handler applies its own limit. It is above every limit but the
// snapshot's (KV values and transactions: 512 KiB), so a too-large value is refused
// after it was read and the client, still writing, is not reset mid-request.
const fastBufferedBody = 1 << 20

// fastHeaderBytes bounds the request line and headers (fasthttp's read buffer).
// Consul's clients send well under 1 KiB; a long ?filter= fits.
const fastHeaderBytes = 16 << 10

func (s *Server) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               s.serveFast,
		ErrorHandler:          s.fastError,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// ReadTimeout bounds a new connection's wait for its first request and the
		// reading of each request (net/http's ReadHeaderTimeout before).
		ReadTimeout:                  10 * time.Second,
		IdleTimeout:                  2 * time.Minute,
		ReadBufferSize:               fastHeaderBytes,
		MaxRequestBodySize:           fastBufferedBody,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		// A worker serves a connection for its life; idle ones need not linger.
		MaxIdleWorkerDuration: time.Second,
		Logger:                fastLogger{s.logger},
	}
}

// fastLogger passes fasthttp's own messages (connection errors) to slog at debug.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}

// fastError answers a request fasthttp could not read, in the API's error format.
func (s *Server) fastError(ctx *fasthttp.RequestCtx, err error) {
	code, reason := http.StatusBadRequest, "Malformed request: "+oneLine(err.Error())
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		code, reason = http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("Request header too large, max size: %d bytes", fastHeaderBytes)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, reason = http.StatusRequestEntityTooLarge, "Request body too large"
	case errors.As(err, &ne) && ne.Timeout():
		code, reason = http.StatusRequestTimeout, "Request not received in time"
	}
	ctx.SetConnectionClose()
	ctx.Response.Reset()
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetBodyString(reason + "\n")
}

// serveFast converts a fasthttp request into a net/http one and serves it.
func (s *Server) serveFast(ctx *fasthttp.RequestCtx) {
	fr := fastRequests.Get().(*fastRequest)
	defer fr.release()
	cs := connStringsOf(ctx)
	rawURI := cs.uriOf(ctx.RequestURI())
	if err := parseRequestURL(rawURI, &fr.url); err != nil {
		s.fastError(ctx, fmt.Errorf("invalid request URI: %w", err))
		return
	}
	r := &fr.req
	*r = http.Request{
		Method:     methodString(ctx.Method()),
		URL:        &fr.url,
		RequestURI: rawURI,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     fr.header,
		Host:       cs.hostOf(ctx.Host()),
		RemoteAddr: cs.remoteOf(ctx),
	}
	// The query, parsed here as url.ParseQuery would into a pooled map, is what
	// queryOf returns.
	r.Form = fr.parseQuery(fr.url.RawQuery)
	if !ctx.Request.Header.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	hdr := fr.header
	for k, v := range ctx.Request.Header.All() {
		key := headerKey(k)
		if key == "Host" {
			continue // in r.Host, as net/http does
		}
		val := cs.valueOf(key, v)
		if prev, ok := hdr[key]; ok {
			hdr[key] = append(prev, val)
			continue
		}
		hdr[key] = fr.hslots.take(val)
	}
	var stream io.Reader
	if ctx.Request.IsBodyStream() {
		// fasthttp streams every body past its first 8 KiB, which it has read.
		stream = ctx.RequestBodyStream()
		r.Body = io.NopCloser(stream)
		r.ContentLength = int64(ctx.Request.Header.ContentLength())
		if r.ContentLength < 0 {
			r.ContentLength = -1
		}
		if r.ContentLength < 0 || r.ContentLength > fastBufferedBody {
			// A large body arrives while the handler reads it: lift the read
			// deadline, which is for a request's header, not for the upload of a
			// big snapshot.
			ctx.Conn().SetReadDeadline(time.Time{})
		}
	} else if body := ctx.Request.Body(); len(body) > 0 {
		r.Body = fr.bodyOf(body)
		r.ContentLength = int64(len(body))
	} else {
		r.Body = http.NoBody
	}

	// A blocking query may wait for minutes: end it when its client hangs up, as
	// net/http would, so an abandoned watch does not hold its goroutine and memory.
	var stop func()
	if r.Method == http.MethodGet && bytes.Contains(ctx.URI().QueryString(), []byte("index=")) {
		c, cancel := context.WithCancel(context.Background())
		defer cancel()
		r = r.WithContext(c)
		stop = watchHangup(ctx.Conn(), cancel)
	}

	w := fastWriters.Get().(*fastWriter)
	w.ctx, w.header, w.code = ctx, headerPool.Get().(http.Header), 0
	defer func() {
		if stop != nil {
			stop()
		}
		if p := recover(); p != nil {
			// http.ErrAbortHandler (or a panic the middleware did not catch): drop the
			// connection without an answer, as net/http does.
			if p != http.ErrAbortHandler {
				s.logger.Error("handler panic outside the middleware", "panic", p)
			}
			ctx.Response.Reset()
			ctx.SetConnectionClose()
			ctx.Conn().Close()
		} else {
			if stream != nil && r.ContentLength <= fastBufferedBody {
				// A handler that refused a body unread (413) leaves it on the wire;
				// fasthttp drains only 256 KiB and otherwise closes, and a client still
				// writing then gets a reset instead of the answer. Read what is left
				// of a body of up to 1 MiB, for at most a few seconds (a larger one
				// announced too large is answered at once, and the connection closed).
				ctx.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, io.LimitReader(stream, fastBufferedBody))
			}
			w.finish()
		}
		clear(w.header)
		headerPool.Put(w.header)
		w.ctx, w.header = nil, nil
		fastWriters.Put(w)
	}()
	s.handler.ServeHTTP(w, r)
}

var (
	headerPool   = sync.Pool{New: func() any { return make(http.Header, 8) }}
	fastWriters  = sync.Pool{New: func() any { return new(fastWriter) }}
	fastRequests = sync.Pool{New: func() any {
		return &fastRequest{header: make(http.Header, 8), form: make(url.Values, 4)}
	}}
)

// methodString returns the method without allocating for the common ones.
func methodString(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPost:
		return http.MethodPost
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodHead:
		return http.MethodHead
	}
	return string(m)
}

// headerKey returns the canonical name of a request header (fasthttp already
// normalized it), without allocating for the names Consul's clients send.
func headerKey(k []byte) string {
	switch string(k) {
	case "Host":
		return "Host"
	case "User-Agent":
		return "User-Agent"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "X-Consul-Token":
		return "X-Consul-Token"
	case "X-Request-Id":
		return "X-Request-Id"
	case "Authorization":
		return "Authorization"
	case "Accept":
		return "Accept"
	}
	return http.CanonicalHeaderKey(string(k))
}

// fastWriter is an http.ResponseWriter that collects the answer into fasthttp's
// response, which fasthttp writes once the handler returns.
type fastWriter struct {
	ctx    *fasthttp.RequestCtx
	header http.Header
	code   int
}

func (w *fastWriter) Header() http.Header { return w.header }

func (w *fastWriter) WriteHeader(code int) {
	if w.code != 0 || code < 200 {
		return // later calls are ignored; 1xx answers are fasthttp's business
	}
	w.code = code
}

func (w *fastWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.ctx.Response.AppendBody(b)
	return len(b), nil
}

// Flush is accepted and does nothing: the answer is sent whole when the handler
// returns. No API handler streams; a snapshot download is held in memory while it is
// sent, and it is a compressed copy of a state that is in memory anyway.
func (w *fastWriter) Flush() {}

// finish moves the status and header into fasthttp's response.
func (w *fastWriter) finish() {
	resp := &w.ctx.Response
	if w.code == 0 {
		w.code = http.StatusOK
	}
	resp.SetStatusCode(w.code)
	typed := false
	for k, vv := range w.header {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue // fasthttp frames the body it holds
		case "Content-Type":
			typed = true
			if len(vv) > 0 {
				resp.Header.SetContentType(vv[0])
			}
			continue
		case "Connection":
			if len(vv) > 0 && vv[0] == "close" {
				resp.SetConnectionClose()
			}
			continue
		}
		for _, v := range vv {
			resp.Header.Add(k, v)
		}
	}
	if !typed && w.code != http.StatusNoContent && w.code != http.StatusNotModified {
		if body := resp.Body(); len(body) > 0 {
			resp.Header.SetContentType(http.DetectContentType(body))
		}
	}
}

// watchHangup calls cancel when the client closes conn (or it fails) while a request
// is being served, and returns a function that stops watching; it must be called
// before the handler returns. It peeks (MSG_PEEK) and so takes nothing from the
// stream: bytes that arrive are a pipelined next request, which ends the watch.
func watchHangup(conn net.Conn, cancel context.CancelFunc) (stop func()) {
	if ra, ok := conn.(*readAheadConn); ok {
		return ra.watchHangup(cancel)
	}
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = u.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// fasthttp armed a read deadline for the request; the wait below must outlive it.
	// fasthttp sets its own deadline again before it reads the next request.
	conn.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		raw.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return false // nothing yet: wait until the socket is readable
			case n == 0 || err != nil:
				cancel() // orderly close or reset: the client is gone
			}
			return true
		})
	}()
	return func() {
		conn.SetReadDeadline(time.Unix(1, 0)) // wakes the wait above
		<-done
		conn.SetReadDeadline(time.Time{})
	}
}

// readAheadListener serves connections without a file descriptor to peek at (yamux
// streams carrying requests forwarded by other agents) as readAheadConns.
type readAheadListener struct{ net.Listener }

func (l readAheadListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readAheadConn{prefixConn: prefixConn{Conn: c}}, nil
}

// readAheadConn notices a hang-up by reading one byte ahead while a request is being
// served, as net/http does; a byte that arrives (a pipelined request) is kept in pre
// and handed to the next Read. Only the watch goroutine and, after it ended, the HTTP
// server read, so pre needs no lock.
type readAheadConn struct {
	prefixConn
	buf [1]byte
}

func (c *readAheadConn) watchHangup(cancel context.CancelFunc) (stop func()) {
	if len(c.pre) > 0 {
		return func() {} // a request is already waiting: not a hang-up
	}
	c.Conn.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := c.Conn.Read(c.buf[:])
		if n > 0 {
			c.pre = c.buf[:n]
			return
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			cancel() // closed or reset: the client is gone
		}
	}()
	return func() {
		c.Conn.SetReadDeadline(time.Unix(1, 0)) // wakes the read above
		<-done
		c.Conn.SetReadDeadline(time.Time{})
	}
}

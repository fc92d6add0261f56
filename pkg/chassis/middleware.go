package chassis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Headers the chassis reads and writes besides W3C traceparent/tracestate.
const (
	// HeaderRequestID carries the request ID: kept from the caller when present, else
	// the trace ID; echoed in the response and sent on by the client.
	HeaderRequestID = "X-Request-Id"
	// HeaderTimeout carries the caller's remaining time budget as a Go duration
	// ("850ms"). The client sets it from the request context's deadline; the server
	// middleware turns it into a deadline on the handler's context, so work downstream
	// stops when the first caller gives up, even across a proxy that keeps the
	// upstream connection open.
	HeaderTimeout = "X-Request-Timeout"
)

// middleware is the one chain every API request passes: trace context, request ID,
// deadline, panic recovery, RED metrics and the access log.
type middleware struct {
	in   *Instance
	next http.Handler
}

var _ http.Handler = (*middleware)(nil)

// Handler wraps h in the chassis's server middleware, as Run does for the API. Use it
// for a handler served outside Run (an extra listener, a test).
func (in *Instance) Handler(h http.Handler) http.Handler {
	if h == nil {
		h = http.NotFoundHandler()
	}
	return &middleware{in: in, next: h}
}

var (
	rwPool = sync.Pool{New: func() any { return new(responseWriter) }}
	// The span options as slices, so that passing them to the tracer (an interface)
	// does not allocate a variadic slice per request.
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	in := m.in
	in.metrics.inflight.Inc()
	defer in.metrics.inflight.Dec()

	ctx := extract(r.Context(), r.Header)
	if v := r.Header[HeaderTimeout]; len(v) > 0 {
		if d, err := time.ParseDuration(v[0]); err == nil && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	ctx, span := in.tracer.Start(ctx, r.Method, serverSpan...)
	ri := &reqInfo{in: in}
	if v := r.Header[HeaderRequestID]; len(v) > 0 {
		ri.id = v[0]
	}
	if !validRequestID(ri.id) {
		ri.id = span.SpanContext().TraceID().String()
	}
	ctx = context.WithValue(ctx, reqKey{}, ri)
	w.Header()[HeaderRequestID] = []string{ri.id}

	rw := rwPool.Get().(*responseWriter)
	*rw = responseWriter{ResponseWriter: w}
	r = r.WithContext(ctx)
	defer func() {
		status := rw.status
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				status = 499 // the handler aborted the response on purpose
				m.finish(r, span, start, status, rw.bytes)
				panic(p)
			}
			in.log.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()),
				"method", r.Method, "path", r.URL.Path)
			if !rw.wrote {
				http.Error(rw, "internal server error", http.StatusInternalServerError)
			}
			status = http.StatusInternalServerError
		} else if !rw.wrote {
			status = http.StatusOK
			// A handler that gave up because the caller's budget ran out and wrote
			// nothing must not pass for an empty success.
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				http.Error(rw, "request deadline exceeded", http.StatusGatewayTimeout)
				status = http.StatusGatewayTimeout
			}
		}
		bytes := rw.bytes
		*rw = responseWriter{}
		rwPool.Put(rw)
		m.finish(r, span, start, status, bytes)
	}()
	m.next.ServeHTTP(rw, r)
}

// finish records the RED metrics, the span's outcome and the access log line.
func (m *middleware) finish(r *http.Request, span trace.Span, start time.Time, status int, bytes int64) {
	in := m.in
	elapsed := time.Since(start)
	route := r.Pattern
	if route == "" {
		route = "other" // not a ServeMux, or no pattern matched
	}
	method := methodLabel(r.Method)
	in.metrics.observe(route, method, status, elapsed)
	if span.IsRecording() {
		span.SetName(r.Method + " " + route)
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.Path),
			attribute.Int("http.response.status_code", status),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
	if in.set.AccessLog && in.log.Enabled(r.Context(), slog.LevelInfo) {
		in.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
			slog.Int("status", status), slog.Int64("bytes", bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr))
	}
}

// validRequestID accepts a caller's request ID of 1–128 visible ASCII characters.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// responseWriter records the status and size of a response. It keeps Flush and
// Hijack working, and Unwrap lets http.ResponseController reach the rest.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wrote {
		w.status, w.wrote = http.StatusSwitchingProtocols, true
	}
	return c, rw, err
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
)

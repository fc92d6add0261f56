package chassis

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// newLogger returns the instance's logger: JSON (or text) lines on w, each with the
// instance ID once it is known and, when logged with a request's context, its
// request_id, trace_id and span_id.
func newLogger(w io.Writer, format string, level slog.Level, id *atomic.Pointer[string]) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(ctxHandler{inner: h, id: id})
}

// ctxHandler adds the instance ID and the request's identifiers to every record.
type ctxHandler struct {
	inner slog.Handler
	id    *atomic.Pointer[string]
}

var _ slog.Handler = ctxHandler{}

func (h ctxHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := h.id.Load(); id != nil {
		r.AddAttrs(slog.String("instance", *id))
	}
	if ctx != nil {
		if ri := reqInfoFrom(ctx); ri != nil && ri.id != "" {
			r.AddAttrs(slog.String("request_id", ri.id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.inner.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{inner: h.inner.WithAttrs(as), id: h.id}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{inner: h.inner.WithGroup(name), id: h.id}
}

package chassis

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The W3C propagators the chassis uses (not OpenTelemetry's global one: the chassis
// sets no globals). extract and inject run them with headerCarrier, and skip the
// baggage propagator when there is no baggage.
var (
	traceContext = propagation.TraceContext{}
	baggageProp  = propagation.Baggage{}
)

// extract returns ctx with the remote span context and baggage of the headers h.
func extract(ctx context.Context, h http.Header) context.Context {
	if len(h["Traceparent"]) > 0 {
		ctx = traceContext.Extract(ctx, headerCarrier(h))
	}
	if len(h["Baggage"]) > 0 {
		ctx = baggageProp.Extract(ctx, headerCarrier(h))
	}
	return ctx
}

// inject writes ctx's span context and baggage into the headers h.
func inject(ctx context.Context, h http.Header) {
	traceContext.Inject(ctx, headerCarrier(h))
	if baggage.FromContext(ctx).Len() > 0 {
		baggageProp.Inject(ctx, headerCarrier(h))
	}
}

// headerCarrier is propagation.HeaderCarrier without the canonicalisation of the
// propagators' lower-case keys, which allocates on every call.
type headerCarrier http.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return textproto.CanonicalMIMEHeaderKey(key)
}

func (c headerCarrier) Get(key string) string {
	if v := c[canonical(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Values(key string) []string { return c[canonical(key)] }

func (c headerCarrier) Set(key, value string) { c[canonical(key)] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// idGenerator draws trace and span IDs from math/rand/v2's per-thread generator: no
// lock, unlike the SDK's default (IDs need to be unique, not secret).
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	var sid trace.SpanID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return tid, sid
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// newTracerProvider builds the instance's tracer provider. Without an exporter
// ("none", the default) spans are not recorded, but every request still gets a trace
// and span ID (for its log lines, its request ID and the traceparent it sends on) and
// a sampled parent's decision is kept, so a trace crossing this service stays whole.
func newTracerProvider(exporter, name, version string) (*sdktrace.TracerProvider, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithIDGenerator(idGenerator{})}
	switch exporter {
	case "otlp":
		// The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and friends itself; it
		// connects lazily, so a missing collector does not stop the start.
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return nil, fmt.Errorf("chassis: OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case "console":
		// stderr, so that stdout stays one JSON log record per line.
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
		if err != nil {
			return nil, fmt.Errorf("chassis: console trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithSyncer(exp))
	default:
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

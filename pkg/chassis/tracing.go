package chassis

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// propagator reads and writes W3C traceparent/tracestate and baggage. It is a value
// of the instance, not OpenTelemetry's global one: the chassis sets no globals.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// newTracerProvider builds the instance's tracer provider. Without an exporter
// ("none", the default) spans are not recorded, but every request still gets a trace
// and span ID (for its log lines, its request ID and the traceparent it sends on) and
// a sampled parent's decision is kept, so a trace crossing this service stays whole.
func newTracerProvider(exporter, name, version string) (*sdktrace.TracerProvider, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
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

package chassis

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestOTLPExport: with OTEL_TRACES_EXPORTER=otlp, the server span of a request (named
// after its route) reaches an OTLP/HTTP collector, in the caller's trace.
func TestOTLPExport(t *testing.T) {
	var mu sync.Mutex
	var posts [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if r.URL.Path == "/v1/traces" {
			posts = append(posts, b)
		}
		mu.Unlock()
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL) // read by the exporter itself

	in, _ := newInstance(t, Service{Name: "traced"}, "OTEL_TRACES_EXPORTER", "otlp")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !trace.SpanFromContext(r.Context()).IsRecording() {
			t.Error("the server span is not recorded with an exporter")
		}
	})
	req := httptest.NewRequest("GET", "/orders/7", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.Handler(mux).ServeHTTP(httptest.NewRecorder(), req)
	in.Close() // flushes the batch

	mu.Lock()
	defer mu.Unlock()
	all := bytes.Join(posts, nil)
	traceID := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	for _, want := range [][]byte{[]byte("GET /orders/{id}"), []byte("traced"), traceID} {
		if !bytes.Contains(all, want) {
			t.Fatalf("the collector got %d posts without %q", len(posts), want)
		}
	}
}

// TestNoExporterRecordsNothing: by default spans only carry IDs.
func TestNoExporterRecordsNothing(t *testing.T) {
	in, logs := newInstance(t, Service{}, "ACCESS_LOG", "true")
	var recording bool
	in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recording = trace.SpanFromContext(r.Context()).IsRecording()
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if recording {
		t.Fatal("spans recorded without an exporter")
	}
	if l := logs.find(t, "request"); l == nil || len(l["trace_id"].(string)) != 32 {
		t.Fatalf("access log without a trace ID: %v", l)
	}
}

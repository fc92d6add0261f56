package chassis

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMiddlewareRequestIDAndTrace(t *testing.T) {
	in, logs := newInstance(t, Service{}, "ACCESS_LOG", "true")
	var gotID, gotTrace string
	h := in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotID = RequestID(r.Context())
		if FromContext(r.Context()) != in {
			t.Error("FromContext does not return the instance")
		}
		in.Logger().InfoContext(r.Context(), "inside")
		w.WriteHeader(http.StatusTeapot)
	}))

	// Without headers: a fresh trace; the request ID is its trace ID.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusTeapot || len(gotID) != 32 || rec.Header().Get(HeaderRequestID) != gotID {
		t.Fatalf("code %d, request ID %q, header %q", rec.Code, gotID, rec.Header().Get(HeaderRequestID))
	}
	inside := logs.find(t, "inside")
	if inside == nil || inside["request_id"] != gotID || inside["trace_id"] != gotID || inside["service"] != "test" {
		t.Fatalf("log line inside the handler: %v", inside)
	}
	access := logs.find(t, "request")
	if access == nil || access["status"] != float64(418) || access["path"] != "/x" || access["request_id"] != gotID {
		t.Fatalf("access log line: %v", access)
	}

	// With a caller's traceparent and request ID: both kept.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := httptest.NewRequest("GET", "/y", nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	req.Header.Set(HeaderRequestID, "abc-123")
	h = in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotID = RequestID(r.Context())
		in.Logger().InfoContext(r.Context(), "second")
		gotTrace = logs.find(t, "second")["trace_id"].(string)
	}))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if gotID != "abc-123" || gotTrace != traceID {
		t.Fatalf("request ID %q, trace ID %q; want the caller's", gotID, gotTrace)
	}

	// An unusable request ID is replaced.
	req = httptest.NewRequest("GET", "/z", nil)
	req.Header.Set(HeaderRequestID, "has space")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if gotID == "has space" || len(gotID) != 32 {
		t.Fatalf("request ID %q kept", gotID)
	}
}

func TestMiddlewareREDMetricsPerRoute(t *testing.T) {
	in, _ := newInstance(t, Service{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "0" {
			http.Error(w, "no", http.StatusNotFound)
		}
	})
	mux.HandleFunc("POST /items", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	h := in.Handler(mux)
	for _, r := range []struct{ method, path string }{
		{"GET", "/items/1"}, {"GET", "/items/2"}, {"GET", "/items/0"}, {"POST", "/items"}, {"GET", "/nowhere"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, r.path, nil))
	}
	for _, c := range []struct {
		route, method, code string
		want                float64
	}{
		{"GET /items/{id}", "GET", "200", 2},
		{"GET /items/{id}", "GET", "404", 1},
		{"POST /items", "POST", "201", 1},
		{"other", "GET", "404", 1},
	} {
		got := metricValue(t, in.reg, "chassis_http_requests_total", map[string]string{"route": c.route, "method": c.method, "code": c.code})
		if got != c.want {
			t.Errorf("requests{%s %s %s} = %v, want %v", c.route, c.method, c.code, got, c.want)
		}
	}
	if got := metricValue(t, in.reg, "chassis_http_request_duration_seconds", map[string]string{"route": "GET /items/{id}"}); got != 3 {
		t.Errorf("duration samples = %v, want 3", got)
	}
	if got := metricValue(t, in.reg, "chassis_http_requests_in_flight", nil); got != 0 {
		t.Errorf("in flight = %v after all requests", got)
	}
}

func TestMiddlewarePanic(t *testing.T) {
	in, logs := newInstance(t, Service{})
	h := in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("code %d, want 500", rec.Code)
	}
	if l := logs.find(t, "handler panicked"); l == nil || l["panic"] != "boom" || !strings.Contains(l["stack"].(string), "middleware_test.go") {
		t.Fatalf("panic log line: %v", l)
	}
	if got := metricValue(t, in.reg, "chassis_http_requests_total", map[string]string{"code": "500"}); got != 1 {
		t.Fatalf("500s counted: %v", got)
	}
}

func TestMiddlewareDeadlineHeader(t *testing.T) {
	in, _ := newInstance(t, Service{})
	var left time.Duration
	var had bool
	h := in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var dl time.Time
		dl, had = r.Context().Deadline()
		left = time.Until(dl)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set(HeaderTimeout, "300ms")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !had || left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("deadline: set %v, %v left; want ≤300ms", had, left)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if had {
		t.Fatal("a deadline without the header")
	}
}

// TestMiddlewareDeadlineAnswer: a handler that stops when the caller's budget runs
// out and writes nothing answers 504, not an empty 200 the caller would take for a
// success; a handler that wrote before it stopped keeps its answer.
func TestMiddlewareDeadlineAnswer(t *testing.T) {
	in, _ := newInstance(t, Service{})
	for _, tc := range []struct {
		name   string
		header string
		write  bool
		want   int
	}{
		{"gave up silently", "20ms", false, http.StatusGatewayTimeout},
		{"wrote, then gave up", "20ms", true, http.StatusAccepted},
		{"no deadline", "", false, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.write {
					w.WriteHeader(http.StatusAccepted)
				}
				if _, ok := r.Context().Deadline(); ok {
					<-r.Context().Done()
				}
			}))
			req := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				req.Header.Set(HeaderTimeout, tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("code %d, want %d", rec.Code, tc.want)
			}
		})
	}
	if got := metricValue(t, in.reg, "chassis_http_requests_total", map[string]string{"code": "504"}); got != 1 {
		t.Fatalf("504s counted: %v", got)
	}
}

func TestGatewayErrorIsRetried(t *testing.T) {
	for code, want := range map[int]bool{500: false, 501: false, 502: true, 503: true, 504: true, 429: false, 200: false} {
		if got := gatewayError(code); got != want {
			t.Errorf("gatewayError(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	in, _ := newInstance(t, Service{})
	srv := httptest.NewServer(in.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			t.Error("not a Flusher")
		}
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Errorf("ResponseController cannot reach the connection: %v", err)
		}
		if r.URL.Path == "/hijack" {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
			c.Close()
		}
	})))
	defer srv.Close()
	if code, _ := get(t, srv.Client(), srv.URL+"/"); code != 200 {
		t.Fatalf("code %d", code)
	}
	if code, _ := get(t, srv.Client(), srv.URL+"/hijack"); code != 204 {
		t.Fatalf("hijacked code %d", code)
	}
}

func TestLoggerLevels(t *testing.T) {
	in, logs := newInstance(t, Service{}, "LOG_LEVEL", "warn")
	in.Logger().Info("hidden")
	in.Logger().Warn("shown")
	if logs.find(t, "hidden") != nil || logs.find(t, "shown") == nil {
		t.Fatalf("level not applied: %v", logs.records(t))
	}
	in2, logs2 := newInstance(t, Service{}, "LOG_FORMAT", "text")
	in2.Logger().InfoContext(context.Background(), "plain")
	if s := logs2.buf.String(); !strings.Contains(s, "msg=plain") {
		t.Fatalf("text format: %q", s)
	}
}

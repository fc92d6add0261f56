package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func runProbe(t *testing.T, p prober, timeout time.Duration) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.probe(ctx)
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHTTPProbeStatus(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/code/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		io.WriteString(w, "body "+r.PathValue("code"))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/code/200", http.StatusMovedPermanently)
	})
	release := make(chan struct{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)
	u := srv.URL

	tests := []struct {
		name       string
		def        Definition
		wantStatus string
		wantOutput string // exact unless prefix
		prefix     bool
	}{
		{"200 passing", Definition{HTTP: u + "/code/200"}, StatusPassing, "HTTP GET " + u + "/code/200: 200 OK Output: body 200", false},
		{"201 passing", Definition{HTTP: u + "/code/201"}, StatusPassing, "HTTP GET " + u + "/code/201: 201 Created Output: body 201", false},
		{"204 passing", Definition{HTTP: u + "/code/204"}, StatusPassing, "HTTP GET " + u + "/code/204: 204 No Content Output: ", false},
		{"299 passing", Definition{HTTP: u + "/code/299"}, StatusPassing, "HTTP GET " + u + "/code/299: 299 status code 299 Output: body 299", false},
		{"300 critical", Definition{HTTP: u + "/code/300"}, StatusCritical, "HTTP GET " + u + "/code/300: 300 Multiple Choices Output: body 300", false},
		{"404 critical", Definition{HTTP: u + "/code/404"}, StatusCritical, "HTTP GET " + u + "/code/404: 404 Not Found Output: body 404", false},
		{"428 critical", Definition{HTTP: u + "/code/428"}, StatusCritical, "HTTP GET " + u + "/code/428: 428 Precondition Required Output: body 428", false},
		{"429 warning", Definition{HTTP: u + "/code/429"}, StatusWarning, "HTTP GET " + u + "/code/429: 429 Too Many Requests Output: body 429", false},
		{"500 critical", Definition{HTTP: u + "/code/500"}, StatusCritical, "HTTP GET " + u + "/code/500: 500 Internal Server Error Output: body 500", false},
		{"503 critical", Definition{HTTP: u + "/code/503"}, StatusCritical, "HTTP GET " + u + "/code/503: 503 Service Unavailable Output: body 503", false},
		{"redirect followed", Definition{HTTP: u + "/redirect"}, StatusPassing, "HTTP GET " + u + "/redirect: 200 OK Output: body 200", false},
		{"redirect not followed when disabled", Definition{HTTP: u + "/redirect", DisableRedirects: true}, StatusCritical, "HTTP GET " + u + "/redirect: 301 Moved Permanently Output: ", true},
		{"method in output", Definition{HTTP: u + "/code/200", Method: "HEAD"}, StatusPassing, "HTTP HEAD " + u + "/code/200: 200 OK Output: ", false},
		{"connection refused", Definition{HTTP: "http://" + closedAddr(t) + "/"}, StatusCritical, "connect: connection refused", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runProbe(t, newHTTPProbe(tt.def, nil), 5*time.Second)
			if got.status != tt.wantStatus {
				t.Errorf("status %s, want %s (output %q)", got.status, tt.wantStatus, got.output)
			}
			switch {
			case tt.wantStatus == StatusCritical && strings.HasPrefix(tt.wantOutput, "connect:"):
				if !strings.Contains(got.output, tt.wantOutput) {
					t.Errorf("output %q lacks %q", got.output, tt.wantOutput)
				}
			case tt.prefix:
				if !strings.HasPrefix(got.output, tt.wantOutput) {
					t.Errorf("output %q, want prefix %q", got.output, tt.wantOutput)
				}
			default:
				if got.output != tt.wantOutput {
					t.Errorf("output %q, want %q", got.output, tt.wantOutput)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		def := Definition{HTTP: srv.URL + "/slow", Timeout: 50 * time.Millisecond}
		start := time.Now()
		got := runProbe(t, newHTTPProbe(def, nil), def.effectiveTimeout())
		if got.status != StatusCritical || !strings.Contains(got.output, "context deadline exceeded") {
			t.Errorf("got %+v, want critical with a deadline error", got)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timed-out probe took %v", d)
		}
	})
}

func TestHTTPProbeRequest(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, gotBody = r.Clone(context.Background()), string(b)
		mu.Unlock()
	}))
	defer srv.Close()

	tests := []struct {
		name  string
		def   Definition
		check func(t *testing.T, r *http.Request, body string)
	}{
		{"defaults", Definition{HTTP: srv.URL + "/h"}, func(t *testing.T, r *http.Request, body string) {
			if r.Method != "GET" || r.URL.Path != "/h" || body != "" {
				t.Errorf("request %s %s body %q", r.Method, r.URL.Path, body)
			}
			if ua := r.Header.Get("User-Agent"); ua != "wolke Health Check" {
				t.Errorf("User-Agent %q", ua)
			}
			if a := r.Header.Get("Accept"); a != "text/plain, text/*, */*" {
				t.Errorf("Accept %q", a)
			}
		}},
		{"method, headers, body, host", Definition{HTTP: srv.URL + "/h", Method: "POST", Body: `{"ping":1}`,
			Header: map[string][]string{"x-token": {"a", "b"}, "User-Agent": {"mine"}, "Accept": {"application/json"}, "Host": {"svc.example"}}},
			func(t *testing.T, r *http.Request, body string) {
				if r.Method != "POST" || body != `{"ping":1}` {
					t.Errorf("request %s body %q", r.Method, body)
				}
				if v := r.Header.Values("X-Token"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
					t.Errorf("X-Token %q", v)
				}
				if ua := r.Header.Get("User-Agent"); ua != "mine" {
					t.Errorf("User-Agent %q, want the check's own", ua)
				}
				if a := r.Header.Get("Accept"); a != "application/json" {
					t.Errorf("Accept %q, want the check's own", a)
				}
				if r.Host != "svc.example" {
					t.Errorf("Host %q", r.Host)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runProbe(t, newHTTPProbe(tt.def, nil), 5*time.Second)
			if res.status != StatusPassing {
				t.Fatalf("probe %+v", res)
			}
			mu.Lock()
			defer mu.Unlock()
			tt.check(t, got, gotBody)
		})
	}
}

func TestHTTPProbeTLS(t *testing.T) {
	srv := newQuietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	defer srv.Close()
	tests := []struct {
		name   string
		def    Definition
		status string
		output string
	}{
		{"skip verify", Definition{HTTP: srv.URL + "/", TLSSkipVerify: true}, StatusPassing, "200 OK Output: secure"},
		{"unknown authority", Definition{HTTP: srv.URL + "/"}, StatusCritical, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runProbe(t, newHTTPProbe(tt.def, nil), 5*time.Second)
			if got.status != tt.status || !strings.Contains(got.output, tt.output) {
				t.Errorf("got %+v, want %s containing %q", got, tt.status, tt.output)
			}
		})
	}
	t.Run("base config roots", func(t *testing.T) {
		base := srv.Client().Transport.(*http.Transport).TLSClientConfig
		got := runProbe(t, newHTTPProbe(Definition{HTTP: srv.URL + "/"}, base), 5*time.Second)
		if got.status != StatusPassing {
			t.Errorf("with the server's CA as base config: %+v", got)
		}
	})
}

func TestHTTPProbeOutputLimit(t *testing.T) {
	big := strings.Repeat("a", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "HEAD"+big)
	}))
	defer srv.Close()
	tests := []struct {
		max      int
		wantBody int
	}{{0, 4096}, {10, 10}, {20000, 10004}}
	for _, tt := range tests {
		got := runProbe(t, newHTTPProbe(Definition{HTTP: srv.URL, OutputMaxSize: tt.max}, nil), 5*time.Second)
		_, body, ok := strings.Cut(got.output, " Output: ")
		if !ok || len(body) != tt.wantBody || !strings.HasPrefix(body, "HEAD") {
			t.Errorf("OutputMaxSize %d: body of %d bytes (%.20q...), want the first %d", tt.max, len(body), body, tt.wantBody)
		}
	}
}

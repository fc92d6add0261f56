package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
)

func TestBadInputGetsStatusAndReason(t *testing.T) {
	a := startDev(t, func(c *Config) { c.HTTP.MaxConnsPerClient = 64 })
	base := "http://" + a.HTTPAddr()
	do := func(method, path string, body io.Reader, contentLength int64) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if contentLength != 0 {
			req.ContentLength = contentLength
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := do("PUT", "/v1/kv/keep", strings.NewReader("safe"), 0); resp.StatusCode != 200 || body != "true" {
		t.Fatalf("setup put: %d %q", resp.StatusCode, body)
	}

	big := strings.Repeat("v", 512*1024+1)
	cases := []struct {
		name, method, path string
		body               io.Reader
		contentLength      int64 // -1: chunked, unknown length
		code               int
		reason             string
	}{
		{"put without key", "PUT", "/v1/kv/", strings.NewReader("x"), 0, 400, "Missing key name"},
		{"get without key", "GET", "/v1/kv/", nil, 0, 400, "Missing key name"},
		{"delete without key", "DELETE", "/v1/kv/", nil, 0, 400, "Missing key name"},
		{"leading slash", "PUT", "/v1/kv//abs", strings.NewReader("x"), 0, 400, "must not begin with a '/'"},
		{"key too long", "PUT", "/v1/kv/" + strings.Repeat("k", 513), strings.NewReader("x"), 0, 400, "byte limit"},
		{"key not utf-8", "PUT", "/v1/kv/bad%ff", strings.NewReader("x"), 0, 400, "UTF-8"},
		{"key with NUL", "PUT", "/v1/kv/bad%00", strings.NewReader("x"), 0, 400, "NUL"},
		{"value too large", "PUT", "/v1/kv/keep", strings.NewReader(big), 0, 413, "too large"},
		{"chunked value too large", "PUT", "/v1/kv/keep", io.MultiReader(strings.NewReader(big)), -1, 413, "too large"},
		{"cas not a number", "PUT", "/v1/kv/keep?cas=abc", strings.NewReader("x"), 0, 400, "Invalid cas"},
		{"flags negative", "PUT", "/v1/kv/keep?flags=-1", strings.NewReader("x"), 0, 400, "Invalid flags"},
		{"cas with acquire", "PUT", "/v1/kv/keep?cas=1&acquire=abc", strings.NewReader("x"), 0, 400, "Conflicting flags"},
		{"delete recurse with cas", "DELETE", "/v1/kv/keep?recurse&cas=1", nil, 0, 400, "Conflicting flags"},
		{"delete cas not a number", "DELETE", "/v1/kv/keep?cas=x", nil, 0, 400, "Invalid cas"},
		{"index not a number", "GET", "/v1/kv/keep?index=abc", nil, 0, 400, "Invalid index"},
		{"wait not a duration", "GET", "/v1/kv/keep?index=1&wait=forever", nil, 0, 400, "Invalid wait"},
		{"stale and consistent", "GET", "/v1/kv/keep?stale&consistent", nil, 0, 400, "conflicting semantics"},
		{"unknown method on kv", "POST", "/v1/kv/keep", strings.NewReader("x"), 0, 405, "not allowed"},
		{"unknown method on status", "PUT", "/v1/status/leader", nil, 0, 405, "not allowed"},
		{"unknown endpoint", "GET", "/v1/nothing", nil, 0, 404, "not a recognized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(tc.method, tc.path, tc.body, tc.contentLength)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.reason) {
				t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, body, tc.code, tc.reason)
			}
			if strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Fatalf("reason is not one line: %q", body)
			}
			if tc.code == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow header")
			}
		})
	}
	// Nothing was lost or changed by the rejected writes.
	if resp, body := do("GET", "/v1/kv/keep?raw", nil, 0); resp.StatusCode != 200 || body != "safe" {
		t.Fatalf("after bad input, keep = %d %q", resp.StatusCode, body)
	}
	// Legal keys that look odd are accepted and read back exactly.
	for _, k := range []string{"a//b", "a/../b", "sp ace", "ünï/cödé", "q?x"} {
		path := "/v1/kv/" + (&neturl.URL{Path: k}).EscapedPath()
		if resp, body := do("PUT", path, strings.NewReader(k), 0); resp.StatusCode != 200 || body != "true" {
			t.Fatalf("put %q: %d %q", k, resp.StatusCode, body)
		}
		if resp, body := do("GET", path+"?raw", nil, 0); resp.StatusCode != 200 || body != k {
			t.Fatalf("get %q: %d %q", k, resp.StatusCode, body)
		}
	}
}

func TestConnectionLimitAnswers429(t *testing.T) {
	a := startDev(t, func(c *Config) { c.HTTP.MaxConnsPerClient = 2 })
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", a.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		// Make sure the server has accepted it before opening the next.
		c.Write([]byte("GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("conn %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	c, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, c)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("third connection: %v", err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection got %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

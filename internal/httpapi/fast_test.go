package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wolke-platform/wolke/internal/state"
)

// startTestServer serves s on a free loopback port until the test ends.
func startTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	s, _ := newTestServer(t, &fakeBackend{})
	s.cfg.Addr = "127.0.0.1:0"
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, s.Addr()
}

// waitFor polls cond every 5 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// currentIndex is the X-Consul-Index a read of key answers with now.
func currentIndex(t *testing.T, addr, key string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/kv/" + key)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idx := resp.Header.Get("X-Consul-Index")
	if idx == "" {
		t.Fatal("a read answered without X-Consul-Index")
	}
	return idx
}

// rawRequest sends req on conn and reads one answer.
func rawRequest(t *testing.T, conn net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	return readAnswer(t, br, method)
}

// readAnswer reads one answer to a request with method.
func readAnswer(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to a %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// startForwardServer also serves s on a second loopback listener through ServeOn,
// as the agent serves requests forwarded by other agents (there over yamux streams,
// which have no file descriptor: the hang-up watch reads ahead instead of peeking).
func startForwardServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeOn(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("ServeOn: %v", err)
		}
	})
	return ln.Addr().String()
}

// bothListeners runs test against the API listener and the forwarding listener.
func bothListeners(t *testing.T, test func(t *testing.T, s *Server, addr string)) {
	t.Run("api", func(t *testing.T) {
		s, addr := startTestServer(t)
		test(t, s, addr)
	})
	t.Run("forwarded", func(t *testing.T) {
		s, _ := startTestServer(t)
		test(t, s, startForwardServer(t, s))
	})
}

func TestFastFrontEndsBlockingQueryWhenClientHangsUp(t *testing.T) {
	bothListeners(t, testEndsBlockingQueryWhenClientHangsUp)
}

func testEndsBlockingQueryWhenClientHangsUp(t *testing.T, s *Server, addr string) {
	blocked := func() float64 { return testutil.ToFloat64(s.metrics.blocking) }

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	idx := currentIndex(t, addr, "watched")
	if _, err := io.WriteString(conn, "GET /v1/kv/watched?index="+idx+"&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the query to block", func() bool { return blocked() == 1 })
	conn.Close()
	// Without noticing the hang-up the query would wait out its 10 minutes.
	waitFor(t, 5*time.Second, "the abandoned query to end", func() bool { return blocked() == 0 })
}

func TestFastFrontKeepsConnectionAfterBlockingQuery(t *testing.T) {
	bothListeners(t, testKeepsConnectionAfterBlockingQuery)
}

func testKeepsConnectionAfterBlockingQuery(t *testing.T, s *Server, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	idx := currentIndex(t, addr, "watched")
	start := time.Now()
	resp, _ := rawRequest(t, conn, br, "GET /v1/kv/watched?index="+idx+"&wait=100ms HTTP/1.1\r\nHost: x\r\n\r\n")
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("blocking query answered after %v, before its wait", took)
	}
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Consul-Index") == "" {
		t.Fatalf("blocking query: %d, X-Consul-Index %q", resp.StatusCode, resp.Header.Get("X-Consul-Index"))
	}
	// The hang-up watch is over and the connection serves the next request.
	resp, body := rawRequest(t, conn, br, "PUT /v1/kv/next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != http.StatusOK || body != "true" {
		t.Fatalf("request after the blocking query: %d %q", resp.StatusCode, body)
	}
	// A request sent while a blocking query waits (pipelined) is neither lost nor
	// taken for a hang-up: both are answered, in order.
	if _, err := io.WriteString(conn, "GET /v1/kv/watched?index="+idx+"&wait=100ms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the query to block", func() bool { return testutil.ToFloat64(s.metrics.blocking) == 1 })
	resp, _ = rawRequest(t, conn, br, "PUT /v1/kv/pipelined HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pipelined: first answer %d, want the blocking query's 404", resp.StatusCode)
	}
	resp, body = readAnswer(t, br, "PUT")
	if resp.StatusCode != http.StatusOK || body != "true" {
		t.Fatalf("pipelined: second answer %d %q", resp.StatusCode, body)
	}
}

func TestFastFrontRequests(t *testing.T) {
	s, addr := startTestServer(t)
	tx := s.backend.Store().WriteTxn()
	if err := tx.KVSet(2, &state.KVEntry{Key: "a//b/c", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	big := strings.Repeat("v", 512*1024+1)
	tests := []struct {
		name     string
		req      string
		code     int
		body     string // the answer's body starts with it
		header   string // a header the answer must carry ("Name: value")
		keepOpen bool   // the connection serves another request afterwards
	}{
		{name: "put", req: "PUT /v1/kv/a//b%2Fc HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv",
			code: 200, body: "true", header: "Content-Type: application/json", keepOpen: true},
		{name: "chunked put", req: "PUT /v1/kv/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			code: 200, body: "true", keepOpen: true},
		{name: "bad query", req: "PUT /v1/kv/a?cas=x HTTP/1.1\r\nHost: x\r\n\r\n",
			code: 400, body: `Invalid cas: "x" is not an unsigned integer`, keepOpen: true},
		{name: "value too large, said up front", req: fmt.Sprintf("PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
			// The refused body is read to its end, so the connection stays open
			// (and a client still writing it is not reset before the answer).
			code: 413, body: "Request body (524289 bytes) too large, max size: 524288 bytes", keepOpen: true},
		{name: "value too large, chunked", req: fmt.Sprintf("PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big),
			code: 413, body: "Request body too large, max size: 524288 bytes"},
		{name: "header too large", req: "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 20<<10) + "\r\n\r\n",
			code: 431, body: "Request header too large"},
		{name: "unknown path", req: "GET /v2/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
			code: 404, body: "Invalid URL path", keepOpen: true},
		{name: "request ID kept", req: "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n\r\n",
			code: 200, header: "X-Request-Id: abc", keepOpen: true},
		{name: "head", req: "HEAD /v1/kv/a//b%2Fc HTTP/1.1\r\nHost: x\r\n\r\n", code: 200, keepOpen: true},
		{name: "HTTP/1.0", req: "GET /v1/kv/a//b%2Fc HTTP/1.0\r\n\r\n", code: 200, body: `[{"LockIndex":0,"Key":"a//b/c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			resp, body := rawRequest(t, conn, br, tt.req)
			if resp.StatusCode != tt.code || !strings.HasPrefix(body, tt.body) {
				t.Fatalf("got %d %q, want %d %q...", resp.StatusCode, body, tt.code, tt.body)
			}
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				if got := resp.Header.Get(name); got != value {
					t.Fatalf("%s: %q, want %q", name, got, value)
				}
			}
			if tt.keepOpen {
				resp, _ := rawRequest(t, conn, br, "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("next request on the connection: %d", resp.StatusCode)
				}
			}
		})
	}
}

func TestFastFrontServesH2CBesideHTTP1(t *testing.T) {
	_, addr := startTestServer(t)
	for _, h2 := range []bool{false, true} {
		var p http.Protocols
		if h2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
		resp, err := client.Get("http://" + addr + "/v1/status/leader")
		if err != nil {
			t.Fatalf("h2c=%v: %v", h2, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := 1
		if h2 {
			want = 2
		}
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != want {
			t.Fatalf("h2c=%v: %d over HTTP/%d", h2, resp.StatusCode, resp.ProtoMajor)
		}
		client.CloseIdleConnections()
	}
}

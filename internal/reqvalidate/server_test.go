package reqvalidate

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// TestServer wires a Validator into a fasthttp server the way the gateway does:
// MaxBodySize from HeaderReceived, Check in the handler, and checks what a
// client gets back over a real connection.
func TestServer(t *testing.T) {
	v, err := New(Policy{MaxBodyBytes: 1024, ContentTypes: []string{"application/json"}}, []byte(shopJSON))
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		MaxRequestBodySize: 1 << 20,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{MaxRequestBodySize: v.MaxBodySize()}
		},
		Handler: func(ctx *fasthttp.RequestCtx) {
			if vi := v.Check(&ctx.Request, ctx.Path()); vi != nil {
				vi.Write(&ctx.Response)
				return
			}
			ctx.SetBody(ctx.Request.Body()) // what would be forwarded
		},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				ctx.SetStatusCode(fasthttp.StatusRequestEntityTooLarge)
				return
			}
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
		},
	}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck // ends with ln.Close
	t.Cleanup(func() { ln.Close() })

	tests := []struct {
		name   string
		raw    string
		status int
		body   string // a substring of the response body
	}{
		{"forwarded intact", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", goodOrder), 200, goodOrder},
		{"violation as JSON", "GET /orders?limit=500 HTTP/1.1\nHost: shop\n\n", 400,
			`{"error":"request validation failed","violation":"query parameter \"limit\": number must be at most 100","field":"query.limit"}`},
		{"405 with Allow", "PUT /orders/1 HTTP/1.1\nHost: shop\nContent-Length: 0\n\n", 405, `"field":"method"`},
		{"411 once fasthttp has filled in a length", "POST /orders HTTP/1.1\nHost: shop\nX-Tenant: acme\nContent-Type: application/json\n\n", 411, "Content-Length"},
		// Under the server's own limit, over the policy's: the 2048 bytes are never
		// sent, so a server that waited for them would not answer.
		{"413 before the body is read", "POST /orders HTTP/1.1\nHost: shop\nX-Tenant: acme\nContent-Type: application/json\nContent-Length: 2048\n\n", 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			resp := roundTrip(t, conn, crlf(tt.raw))
			if resp.StatusCode() != tt.status || !strings.Contains(string(resp.Body()), tt.body) {
				t.Errorf("got %d %s, want %d with %s", resp.StatusCode(), resp.Body(), tt.status, tt.body)
			}
			if tt.status == 405 && len(resp.Header.Peek("Allow")) == 0 {
				t.Errorf("405 without Allow")
			}
		})
	}
}

// roundTrip writes raw and reads the response; if the server waited for a body
// that never comes, it fails instead of hanging.
func roundTrip(t *testing.T, conn net.Conn, raw string) *fasthttp.Response {
	t.Helper()
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	resp := new(fasthttp.Response)
	go func() { done <- resp.Read(bufio.NewReader(conn)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		conn.Close()
		t.Fatal("no response: the server is waiting for the body")
	}
	return resp
}

package httpapi

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/state"
)

// BenchmarkServeFast is one request through the fasthttp adaptor and the API's
// handlers, without the network: what the API's own code costs per request.
func BenchmarkServeFast(b *testing.B) {
	s, _ := newTestServer(b, &fakeBackend{})
	tx := s.backend.Store().WriteTxn()
	for i := range 20 {
		node := string(rune('a'+i)) + "-node"
		if err := tx.CatalogRegister(5, &state.RegisterRequest{Node: state.Node{Node: node, Address: "10.0.0.1"},
			Service: &state.Service{ID: "web", Service: "web", Port: 80},
			Checks:  []state.Check{{Node: node, CheckID: "serfHealth", Name: "Serf", Status: state.HealthPassing}}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.KVSet(6, &state.KVEntry{Key: "bench/key", Value: make([]byte, 256)}); err != nil {
		b.Fatal(err)
	}
	tx.Commit()
	for _, bc := range []struct {
		name, req string
	}{
		{"kv-get", "GET /v1/kv/bench/key HTTP/1.1\r\nHost: x\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"},
		{"kv-put", "PUT /v1/kv/bench/key HTTP/1.1\r\nHost: x\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 4\r\nAccept-Encoding: gzip\r\n\r\nabcd"},
		{"health-service-gzip", "GET /v1/health/service/web?passing HTTP/1.1\r\nHost: x\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			// A connection as the API's listener hands it over: one client sending the
			// same request again and again on it, as a poller does.
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
			ctx.Init2(&prefixConn{Conn: addrConn{remote: addr}}, nil, false)
			if err := ctx.Request.ReadLimitBody(bufioReader(bc.req), 0); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset() // what fasthttp does between requests
				s.serveFast(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}

// addrConn is a connection that only knows its peer's address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

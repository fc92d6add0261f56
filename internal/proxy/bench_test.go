package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// BenchmarkServe measures the gateway's handler for one proxied GET, upstream
// included, over in-memory connections: the CPU and allocations of the code around
// the syscalls, which is what the gateway adds to every request.
func BenchmarkServe(b *testing.B) {
	for _, tc := range []struct {
		name   string
		access bool
	}{{"plain", false}, {"access-log", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			defer ln.Close()
			body := []byte("hello from backend, a small body of around one hundred bytes ........................\n")
			go (&fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}).Serve(ln)

			cfg := DefaultConfig()
			cfg.AccessLog = nil
			if tc.access {
				cfg.AccessLog = discard{}
			}
			p, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			p.insts["bench"] = []servicewatch.Instance{{ID: "a", Service: "bench", Node: "n", Address: "127.0.0.1", Port: 1, Weight: 1}}
			p.applyService("bench")
			p.rebuild()
			for _, e := range p.services["bench"].state.Load().endpoints {
				e.client.Dial = func(string) (net.Conn, error) { return ln.Dial() }
			}
			var req fasthttp.Request
			req.SetRequestURI("/bench/items?id=7")
			req.Header.SetHost("gateway.example")
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx.Init(&req, nil, nil)
				p.serve(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if s := ctx.Response.BodyStream(); s != nil {
					io.Copy(io.Discard, s)
				}
				ctx.Response.CloseBodyStream()
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

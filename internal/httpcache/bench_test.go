package httpcache

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// benchCache holds one stored 1 KiB response with a typical set of fields.
func benchCache(b *testing.B, vary bool) (*Cache, Fetch) {
	c, _ := newTestCache(b, nil)
	kv := []string{"Cache-Control", "public, max-age=3600", "Content-Type", "application/json",
		"ETag", `"5f1c-8a"`, "Last-Modified", "Mon, 02 Mar 2026 10:00:00 GMT", "X-Request-Id", "abc"}
	if vary {
		kv = append(kv, "Vary", "Accept-Encoding")
	}
	o := &origin{handle: static(200, strings.Repeat("j", 1024), kv...)}
	return c, o.fetch
}

// benchRequest parses a typical request as the server would.
func benchRequest(tb testing.TB, ctx *fasthttp.RequestCtx, extra string) {
	raw := "GET /api/items?id=7 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, br\r\nX-Request-Id: 0123456789abcdef\r\n" + extra + "\r\n"
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
}

func benchHit(b *testing.B, vary bool, extra string) {
	c, fetch := benchCache(b, vary)
	var ctx fasthttp.RequestCtx
	benchRequest(b, &ctx, extra)
	if st := c.Serve(&ctx, fetch); st != "wolke; fwd=miss; stored" {
		b.Fatal(st)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ctx.Response.Reset() // as the server does between requests
		if st := c.Serve(&ctx, fetch); st != statusHit {
			b.Fatal(st)
		}
	}
}

func BenchmarkHit(b *testing.B)     { benchHit(b, false, "") }
func BenchmarkHitVary(b *testing.B) { benchHit(b, true, "") }

// With cookies the request fields are looked up one by one (see scanRequest).
func BenchmarkHitCookie(b *testing.B) {
	benchHit(b, false, "Cookie: sid=8f2a9c; theme=dark; consent=1\r\n")
}

func BenchmarkHitParallel(b *testing.B) {
	c, fetch := benchCache(b, false)
	var warm fasthttp.RequestCtx
	benchRequest(b, &warm, "")
	c.Serve(&warm, fetch)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		benchRequest(b, &ctx, "")
		for pb.Next() {
			ctx.Response.Reset()
			if st := c.Serve(&ctx, fetch); st != statusHit {
				b.Error(st)
				return
			}
		}
	})
}

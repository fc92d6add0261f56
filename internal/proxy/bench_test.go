package proxy

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/wolke-platform/wolke/internal/authn/authntest"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// BenchmarkServe measures the gateway's handler for one proxied GET, upstream
// included, over in-memory connections: the CPU and allocations of the code around
// the syscalls, with no policy and with each policy, so that what a policy adds per
// request is the difference to "plain".
func BenchmarkServe(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef-wolke")
	jwks := fmt.Sprintf(`{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":%q}]}`, base64.RawURLEncoding.EncodeToString(secret))
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "iss": "shop", "aud": "gateway", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k1"
	token, err := tok.SignedString(secret)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		access    bool
		cacheable bool
		noCache   bool // the client asks past the cache: every request fetches and stores anew
	}{
		{name: "plain", doc: `{"concurrency": {"disabled": true}}`},
		{name: "access-log", doc: `{"concurrency": {"disabled": true}}`, access: true},
		{name: "concurrency", doc: `{}`},
		{name: "rate-limit", doc: `{"concurrency": {"disabled": true}, "rate_limit": {"rate": 1e8, "burst": 1000000, "key": "ip"}}`},
		{name: "jwt", doc: `{"concurrency": {"disabled": true}, "auth": {"jwt": {"jwks_key": "jwks", "issuer": "shop", "audience": ["gateway"]}}}`},
		{name: "validation", doc: `{"concurrency": {"disabled": true}, "validation": {"methods": ["GET"], "max_uri_length": 1024, "max_headers": 32}}`},
		{name: "cache-hit", doc: `{"concurrency": {"disabled": true}, "cache": {"enabled": true}}`, cacheable: true},
		// The answer may not be stored: every request is a miss that is looked up,
		// forwarded and passed through.
		{name: "cache-miss", doc: `{"concurrency": {"disabled": true}, "cache": {"enabled": true}}`},
		{name: "cache-refetch", doc: `{"concurrency": {"disabled": true}, "cache": {"enabled": true}}`, cacheable: true, noCache: true},
		{name: "all-hit", doc: `{"rate_limit": {"rate": 1e8, "burst": 1000000, "key": "ip"}, "auth": {"jwt": {"jwks_key": "jwks", "issuer": "shop", "audience": ["gateway"]}},
			"validation": {"methods": ["GET"], "max_uri_length": 1024}, "cache": {"enabled": true}}`, cacheable: true},
		// The backend's answer may not be stored, so every request is a cache miss that
		// is looked up, proxied, and refused storage.
		{name: "all-miss", doc: `{"rate_limit": {"rate": 1e8, "burst": 1000000, "key": "ip"}, "auth": {"jwt": {"jwks_key": "jwks", "issuer": "shop", "audience": ["gateway"]}},
			"validation": {"methods": ["GET"], "max_uri_length": 1024}, "cache": {"enabled": true}}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			defer ln.Close()
			body := []byte("hello from backend, a small body of around one hundred bytes ........................\n")
			go (&fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
				if tc.cacheable {
					ctx.Response.Header.Set("Cache-Control", "public, max-age=3600")
				}
				ctx.SetBody(body)
			}}).Serve(ln)

			cfg := DefaultConfig()
			cfg.AccessLog = nil
			if tc.access {
				cfg.AccessLog = io.Discard
			}
			p, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			kv := &authntest.MemKV{}
			kv.Put("jwks", []byte(jwks))
			p.authDeps.KV = kv
			pol, err := ParseDoc([]byte(tc.doc))
			if err != nil {
				b.Fatal(err)
			}
			p.docs["bench"] = &doc{raw: []byte(tc.doc), checked: pol}
			p.insts["bench"] = []servicewatch.Instance{{ID: "a", Service: "bench", Node: "n", Address: "127.0.0.1", Port: 1, Weight: 1}}
			p.applyService("bench")
			p.rebuild()
			st := p.services["bench"].state.Load()
			if st.broken != "" {
				b.Fatal(st.broken)
			}
			for _, e := range st.endpoints {
				e.client.Dial = func(string) (net.Conn, error) { return ln.Dial() }
			}
			var req fasthttp.Request
			req.SetRequestURI("/bench/items?id=7")
			req.Header.SetHost("gateway.example")
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			req.Header.Set("Authorization", "Bearer "+token)
			if tc.noCache {
				req.Header.Set("Cache-Control", "no-cache")
			}
			var ctx fasthttp.RequestCtx
			run := func() {
				ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
				p.serve(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if s := ctx.Response.BodyStream(); s != nil {
					io.Copy(io.Discard, s)
				}
				ctx.Response.CloseBodyStream()
			}
			run() // warm: JWKS read, JWT verdict cached, cache filled
			deadline := time.Now().Add(2 * time.Second)
			for st.auth != nil && ctx.Response.StatusCode() != 200 && time.Now().Before(deadline) {
				run()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
		})
	}
}

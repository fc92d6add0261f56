package authn_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/authn"
)

// testNow is the tests' fixed clock.
var testNow = time.Unix(1_800_000_000, 0)

// clock is a settable clock for Deps.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// testKeys are the signing keys of the tests, generated once per test binary (an RSA
// key takes a while).
type testKeys struct {
	hs    []byte
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	other *rsa.PrivateKey // a key the JWKS does not hold
}

var (
	keysOnce sync.Once
	keysVal  testKeys
)

func keys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		keysVal.hs = make([]byte, 32)
		rand.Read(keysVal.hs)
		var err error
		if keysVal.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keysVal.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keysVal.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return keysVal
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func octJWK(kid string, k []byte) map[string]any {
	return map[string]any{"kty": "oct", "kid": kid, "k": b64u(k)}
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	pt, err := k.Bytes()
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(pt[1:33]), "y": b64u(pt[33:])}
}

func jwksDoc(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// stdJWKS holds the three test keys as hs1, rs1 and es1.
func stdJWKS(t testing.TB) []byte {
	k := keys(t)
	return jwksDoc(octJWK("hs1", k.hs), rsaJWK("rs1", &k.rsa.PublicKey), ecJWK("es1", &k.ec.PublicKey))
}

func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sign makes a token; kid "" leaves the kid out.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned makes a token with any header, and an empty signature.
func unsigned(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return b64u(h) + "." + b64u(c) + "."
}

func rsaPublicPEM(k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// parseReq reads a raw HTTP/1.1 request head the way the gateway's server does, so
// header names get fasthttp's normalization. lines are header lines.
func parseReq(t testing.TB, lines ...string) *fasthttp.Request {
	t.Helper()
	raw := "GET /orders/7?x=1 HTTP/1.1\r\nHost: shop.example\r\n" + strings.Join(lines, "\r\n")
	if len(lines) > 0 {
		raw += "\r\n"
	}
	raw += "\r\n"
	req := new(fasthttp.Request)
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	return req
}

func newAuth(t testing.TB, p authn.Policy, d authn.Deps) *authn.Authenticator {
	t.Helper()
	a, err := authn.New(p, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// identities returns every value of the identity header in req, under any spelling.
func identities(req *fasthttp.Request) []string {
	var out []string
	for k, v := range req.Header.All() {
		n := strings.ReplaceAll(strings.ToLower(string(k)), "_", "-")
		if n == "x-wolke-identity" {
			out = append(out, string(v))
		}
	}
	return out
}

// eventually polls cond every 5ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

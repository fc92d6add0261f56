package authn_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/authn/authntest"
)

const testIssuer = "https://issuer.test"

func jwtPolicy(jwksFile string) authn.Policy {
	return authn.Policy{JWT: &authn.JWTPolicy{
		JWKSFile:       jwksFile,
		Issuer:         testIssuer,
		Audience:       []string{"api", "web"},
		RequiredClaims: map[string]string{"role": "reader"},
	}}
}

// claims returns valid claims for the test policy, changed by the key/value pairs
// (a nil value deletes the claim).
func claims(kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":  "alice",
		"iss":  testIssuer,
		"aud":  "api",
		"exp":  testNow.Add(time.Hour).Unix(),
		"nbf":  testNow.Add(-time.Minute).Unix(),
		"iat":  testNow.Add(-time.Minute).Unix(),
		"role": "reader",
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestJWT(t *testing.T) {
	k := keys(t)
	a := newAuth(t, jwtPolicy(writeFile(t, stdJWKS(t))), authn.Deps{Now: func() time.Time { return testNow }})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, k.hs, "hs1", c) }

	tests := []struct {
		name       string
		auth       string // the Authorization header; "" sends none
		status     int    // 200 for success
		reason     string // a part of Result.Reason
		challenge  string // a part of Result.Challenge
		identity   string
		claimRole  string
		wantClaims bool
	}{
		{name: "valid HS256", auth: "Bearer " + hs(claims()), status: 200, identity: "alice", claimRole: "reader"},
		{name: "valid RS256", auth: "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "rs1", claims("sub", "bob")), status: 200, identity: "bob"},
		{name: "valid ES256", auth: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims("sub", "carol")), status: 200, identity: "carol"},
		{name: "valid without kid", auth: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "", claims()), status: 200, identity: "alice"},
		{name: "scheme in lowercase", auth: "bearer " + hs(claims()), status: 200, identity: "alice"},
		{name: "aud array with one match", auth: "Bearer " + hs(claims("aud", []string{"other", "web"})), status: 200, identity: "alice"},
		{name: "required claim in an array", auth: "Bearer " + hs(claims("role", []string{"admin", "reader"})), status: 200, identity: "alice"},
		{name: "numeric identity claim", auth: "Bearer " + hs(claims("sub", 12345678901234567)), status: 200, identity: "12345678901234567"},
		{name: "expired within leeway", auth: "Bearer " + hs(claims("exp", testNow.Add(-20*time.Second).Unix())), status: 200, identity: "alice"},
		{name: "expired", auth: "Bearer " + hs(claims("exp", testNow.Add(-time.Minute).Unix())), status: 401, reason: "expired", challenge: `error="invalid_token"`},
		{name: "not yet valid", auth: "Bearer " + hs(claims("nbf", testNow.Add(5*time.Minute).Unix())), status: 401, reason: "not valid yet"},
		{name: "no exp", auth: "Bearer " + hs(claims("exp", nil)), status: 401, reason: "lacks exp"},
		{name: "wrong issuer", auth: "Bearer " + hs(claims("iss", "https://evil.test")), status: 401, reason: "wrong issuer"},
		{name: "no issuer", auth: "Bearer " + hs(claims("iss", nil)), status: 401, reason: "lacks iss"},
		{name: "no audience", auth: "Bearer " + hs(claims("aud", nil)), status: 401, reason: "lacks aud"},
		{name: "wrong audience", auth: "Bearer " + hs(claims("aud", "billing")), status: 401, reason: "wrong audience"},
		{name: "wrong signature", auth: "Bearer " + sign(t, jwt.SigningMethodRS256, k.other, "rs1", claims()), status: 401, reason: "bad signature"},
		{name: "wrong HMAC secret", auth: "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef"), "hs1", claims()), status: 401, reason: "bad signature"},
		{name: "tampered claims", auth: "Bearer " + tamper(hs(claims()), claims("sub", "root")), status: 401, reason: "bad signature"},
		{name: "alg none", auth: "Bearer " + unsigned(map[string]any{"alg": "none", "typ": "JWT"}, claims()), status: 401, reason: "alg not accepted"},
		{name: "alg None", auth: "Bearer " + unsigned(map[string]any{"alg": "None", "kid": "hs1"}, claims()), status: 401, reason: "alg not accepted"},
		{name: "alg HS384", auth: "Bearer " + sign(t, jwt.SigningMethodHS384, k.hs, "hs1", claims()), status: 401, reason: "alg not accepted"},
		{name: "alg swap: HS256 with the RSA public key, its kid", auth: "Bearer " + sign(t, jwt.SigningMethodHS256, rsaPublicPEM(&k.rsa.PublicKey), "rs1", claims()), status: 401, reason: "does not fit"},
		{name: "alg swap: HS256 with the RSA public key, no kid", auth: "Bearer " + sign(t, jwt.SigningMethodHS256, rsaPublicPEM(&k.rsa.PublicKey), "", claims()), status: 401, reason: "bad signature"},
		{name: "alg swap: RS256 header on the ES256 key", auth: "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "es1", claims()), status: 401, reason: "does not fit"},
		{name: "unknown kid", auth: "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "rs9", claims()), status: 401, reason: "unknown kid"},
		{name: "kid not a string", auth: "Bearer " + unsigned(map[string]any{"alg": "HS256", "kid": 7}, claims()), status: 401},
		{name: "missing token", auth: "", status: 401, reason: "no credentials", challenge: `Bearer realm="wolke"`},
		{name: "other scheme", auth: "Token abc", status: 401, reason: "no credentials"},
		{name: "scheme without token", auth: "Bearer", status: 401, reason: "empty bearer token"},
		{name: "malformed: two parts", auth: "Bearer abc.def", status: 401, reason: "malformed"},
		{name: "malformed: not base64", auth: "Bearer !!!.???.***", status: 401, reason: "malformed"},
		{name: "malformed: space inside", auth: "Bearer " + strings.Replace(hs(claims()), ".", ". ", 1), status: 401},
		{name: "no identity claim", auth: "Bearer " + hs(claims("sub", nil)), status: 401, reason: "no sub claim"},
		{name: "missing required claim", auth: "Bearer " + hs(claims("role", nil)), status: 403, reason: "role", challenge: "insufficient_scope", identity: ""},
		{name: "required claim with another value", auth: "Bearer " + hs(claims("role", "writer")), status: 403, reason: "role"},
		{name: "required claim not in the array", auth: "Bearer " + hs(claims("role", []string{"writer"})), status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second answer comes from the cache when the first was cacheable.
			for round := range 2 {
				var req = parseReq(t, "X-Wolke-Identity: mallory")
				if tc.auth != "" {
					req = parseReq(t, "Authorization: "+tc.auth, "X-Wolke-Identity: mallory")
				}
				res := a.Authenticate(req)
				status := res.Status
				if res.OK {
					status = 200
				}
				if status != tc.status {
					t.Fatalf("round %d: status %d (reason %q), want %d", round, status, res.Reason, tc.status)
				}
				if !strings.Contains(res.Reason, tc.reason) || !strings.Contains(res.Challenge, tc.challenge) {
					t.Errorf("round %d: reason %q, challenge %q; want them to contain %q, %q", round, res.Reason, res.Challenge, tc.reason, tc.challenge)
				}
				if !res.OK && res.Challenge == "" {
					t.Errorf("round %d: a %d without a challenge", round, status)
				}
				ids := identities(req)
				switch {
				case res.OK && (len(ids) != 1 || ids[0] != tc.identity || res.Identity != tc.identity):
					t.Errorf("round %d: identity header %q, Identity %q; want [%s]", round, ids, res.Identity, tc.identity)
				case !res.OK && len(ids) != 0:
					t.Errorf("round %d: refused request still carries identity %q", round, ids)
				}
				if tc.claimRole != "" && res.Claim("role") != tc.claimRole {
					t.Errorf("Claim(role) = %q, want %q", res.Claim("role"), tc.claimRole)
				}
			}
		})
	}
}

// tamper swaps a token's payload for other claims, keeping header and signature.
func tamper(tok string, c jwt.MapClaims) string {
	parts := strings.Split(tok, ".")
	other := unsigned(map[string]any{}, c)
	parts[1] = strings.Split(other, ".")[1]
	return strings.Join(parts, ".")
}

// TestJWTCacheRespectsExpiry: a cached verdict ends with the token.
func TestJWTCacheRespectsExpiry(t *testing.T) {
	k := keys(t)
	clk := newClock(testNow)
	a := newAuth(t, jwtPolicy(writeFile(t, stdJWKS(t))), authn.Deps{Now: clk.Now})
	tok := sign(t, jwt.SigningMethodHS256, k.hs, "hs1", claims("exp", testNow.Add(time.Minute).Unix(), "nbf", testNow.Add(time.Minute).Unix()))
	req := func() *fasthttp.Request { return parseReq(t, "Authorization: Bearer "+tok) }

	if res := a.Authenticate(req()); res.Status != 401 || !strings.Contains(res.Reason, "not valid yet") {
		t.Fatalf("before nbf: %+v", res)
	}
	clk.Add(time.Minute)
	for range 3 {
		if res := a.Authenticate(req()); !res.OK {
			t.Fatalf("inside the window: %+v", res)
		}
	}
	if n := authn.CachedTokens(a); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
	clk.Add(29 * time.Second) // past exp, within leeway
	if res := a.Authenticate(req()); !res.OK {
		t.Fatalf("within leeway: %+v", res)
	}
	clk.Add(2 * time.Second) // past exp + leeway
	if res := a.Authenticate(req()); res.OK || !strings.Contains(res.Reason, "expired") {
		t.Fatalf("after exp + leeway: %+v", res)
	}
}

// TestJWKSFileReload: Reload picks up a new key set, and verdicts cached under the
// old one are not used.
func TestJWKSFileReload(t *testing.T) {
	k := keys(t)
	file := writeFile(t, jwksDoc(octJWK("hs1", k.hs)))
	a := newAuth(t, jwtPolicy(file), authn.Deps{Now: func() time.Time { return testNow }})
	hsTok := "Authorization: Bearer " + sign(t, jwt.SigningMethodHS256, k.hs, "hs1", claims())
	rsTok := "Authorization: Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "rs1", claims())

	if res := a.Authenticate(parseReq(t, hsTok)); !res.OK {
		t.Fatalf("hs1 before reload: %+v", res)
	}
	if res := a.Authenticate(parseReq(t, rsTok)); res.OK {
		t.Fatal("rs1 accepted before it is in the key set")
	}
	if err := os.WriteFile(file, jwksDoc(rsaJWK("rs1", &k.rsa.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if res := a.Authenticate(parseReq(t, rsTok)); !res.OK {
		t.Fatalf("rs1 after reload: %+v", res)
	}
	if res := a.Authenticate(parseReq(t, hsTok)); res.OK {
		t.Fatal("hs1 still accepted (from the cache?) after it left the key set")
	}
	// A broken file keeps the keys in use.
	if err := os.WriteFile(file, []byte(`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "2048") {
		t.Fatalf("Reload of a weak key: %v", err)
	}
	if res := a.Authenticate(parseReq(t, rsTok)); !res.OK {
		t.Fatalf("rs1 after a failed reload: %+v", res)
	}
}

// TestJWKSFromKV: the key set follows the KV key.
func TestJWKSFromKV(t *testing.T) {
	k := keys(t)
	kv := &authntest.MemKV{}
	const key = "wolke/gateway/jwks/main"
	kv.Put(key, jwksDoc(octJWK("hs1", k.hs)))
	p := authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: key}}
	a := newAuth(t, p, authn.Deps{KV: kv, Now: func() time.Time { return testNow }})
	hsTok := "Authorization: Bearer " + sign(t, jwt.SigningMethodHS256, k.hs, "hs1", claims())
	esTok := "Authorization: Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims())
	ok := func(h string) bool { return a.Authenticate(parseReq(t, h)).OK }

	if !ok(hsTok) || ok(esTok) {
		t.Fatal("initial key set not applied")
	}
	kv.Put("wolke/gateway/apikeys/unrelated", []byte("{}")) // another key: nothing changes
	kv.Put(key, jwksDoc(ecJWK("es1", &k.ec.PublicKey)))
	eventually(t, time.Second, "es1 accepted after the KV change", func() bool { return ok(esTok) })
	if ok(hsTok) {
		t.Fatal("hs1 still accepted after it left the key set")
	}
	kv.Put(key, []byte("not json")) // broken: the keys stay
	kv.Put("wolke/x", nil)          // one more change to be sure the broken one was seen
	time.Sleep(20 * time.Millisecond)
	if !ok(esTok) {
		t.Fatal("a broken document replaced the keys")
	}
	kv.Delete(key) // deleted: every token refused
	eventually(t, time.Second, "es1 refused after the key was deleted", func() bool { return !ok(esTok) })

	if _, err := authn.New(authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: "missing"}}, authn.Deps{KV: kv}); err == nil {
		t.Fatal("New accepted a jwks_key that does not exist")
	}
}

func TestParseJWKS(t *testing.T) {
	k := keys(t)
	good := octJWK("hs1", k.hs)
	tests := []struct {
		name string
		doc  string
		err  string // "" for success
	}{
		{"three types", string(stdJWKS(t)), ""},
		{"skips other types and uses", string(jwksDoc(good, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AA"},
			map[string]any{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
			map[string]any{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
			map[string]any{"kty": "RSA", "alg": "PS256", "n": "AQAB", "e": "AQAB"})), ""},
		{"padding tolerated", string(jwksDoc(map[string]any{"kty": "oct", "k": b64u(k.hs) + "="})), ""},
		{"not json", "{", "not a JSON key set"},
		{"no keys", `{}`, `no "keys"`},
		{"no usable key", `{"keys":[]}`, "no usable key"},
		{"short oct", string(jwksDoc(octJWK("s", []byte("short")))), "at least 32"},
		{"bad base64", `{"keys":[{"kty":"oct","k":"!!"}]}`, "base64url"},
		{"small RSA", `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, "2048"},
		{"EC off the curve", string(jwksDoc(map[string]any{"kty": "EC", "crv": "P-256", "x": b64u(make([]byte, 32)), "y": b64u(make([]byte, 32))})), "EC key"},
		{"alg for another type", string(jwksDoc(map[string]any{"kty": "oct", "alg": "RS256", "k": b64u(k.hs)})), "does not fit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := authn.Policy{JWT: &authn.JWTPolicy{JWKSFile: writeFile(t, []byte(tc.doc))}}
			a, err := authn.New(p, authn.Deps{})
			if a != nil {
				a.Close()
			}
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// BenchmarkJWTCached is a client re-using its token: the verdict comes from the cache.
func BenchmarkJWTCached(b *testing.B) {
	k := keys(b)
	a := newAuth(b, jwtPolicy(writeFile(b, stdJWKS(b))), authn.Deps{Now: func() time.Time { return testNow }})
	tok := sign(b, jwt.SigningMethodRS256, k.rsa, "rs1", claims())
	req := parseReq(b, "User-Agent: bench", "Accept: */*", "Authorization: Bearer "+tok, "X-Request-Id: 0123456789abcdef")
	if res := a.Authenticate(req); !res.OK {
		b.Fatal(res.Reason)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := a.Authenticate(req); !res.OK {
			b.Fatal(res.Reason)
		}
	}
}

// BenchmarkJWTUncached verifies a token the cache has not seen, per algorithm.
func BenchmarkJWTUncached(b *testing.B) {
	k := keys(b)
	for _, m := range []struct {
		alg jwt.SigningMethod
		key any
		kid string
	}{{jwt.SigningMethodHS256, k.hs, "hs1"}, {jwt.SigningMethodRS256, k.rsa, "rs1"}, {jwt.SigningMethodES256, k.ec, "es1"}} {
		b.Run(m.alg.Alg(), func(b *testing.B) {
			a := newAuth(b, jwtPolicy(writeFile(b, stdJWKS(b))), authn.Deps{Now: func() time.Time { return testNow }})
			tok := sign(b, m.alg, m.key, m.kid, claims())
			b.ReportAllocs()
			for b.Loop() {
				if res := authn.VerifyUncached(a, tok); !res.OK {
					b.Fatal(res.Reason)
				}
			}
		})
	}
}

// TestJWTConcurrent: requests racing with key set changes (run with -race).
func TestJWTConcurrent(t *testing.T) {
	k := keys(t)
	kv := &authntest.MemKV{}
	const key = "wolke/gateway/jwks/main"
	both, hsOnly := stdJWKS(t), jwksDoc(octJWK("hs1", k.hs))
	kv.Put(key, both)
	a := newAuth(t, authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: key}}, authn.Deps{KV: kv, Now: func() time.Time { return testNow }})
	hs := "Authorization: Bearer " + sign(t, jwt.SigningMethodHS256, k.hs, "hs1", claims())
	es := "Authorization: Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims())
	done := make(chan struct{})
	errs := make(chan string, 8)
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 300 {
				if res := a.Authenticate(parseReq(t, hs, "X-Wolke-Identity: x")); !res.OK || res.Identity != "alice" {
					errs <- fmt.Sprintf("goroutine %d request %d: %+v", g, i, res)
					return
				}
				a.Authenticate(parseReq(t, es)) // accepted or not, depending on the moment
			}
		}()
	}
	for i := range 50 {
		if i%2 == 0 {
			kv.Put(key, hsOnly)
		} else {
			kv.Put(key, both)
		}
		time.Sleep(time.Millisecond)
	}
	for range 4 {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

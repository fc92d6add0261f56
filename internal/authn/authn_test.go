package authn_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/authn/authntest"
)

func TestValidate(t *testing.T) {
	hash := bcryptHash(t, "pw")
	tests := []struct {
		name string
		p    authn.Policy
		err  string // "" when valid
	}{
		{"jwt from a file", authn.Policy{JWT: &authn.JWTPolicy{JWKSFile: "/etc/jwks.json"}}, ""},
		{"all four", authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: "k"}, APIKey: &authn.APIKeyPolicy{},
			Basic: &authn.BasicPolicy{Users: map[string]string{"u": hash}}, Forward: &authn.ForwardPolicy{URL: "http://auth:9000/check"}}, ""},
		{"nothing", authn.Policy{}, "no method"},
		{"jwt without keys", authn.Policy{JWT: &authn.JWTPolicy{}}, "exactly one of jwks_file and jwks_key"},
		{"jwt with both", authn.Policy{JWT: &authn.JWTPolicy{JWKSFile: "f", JWKSKey: "k"}}, "exactly one"},
		{"jwt key with /", authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: "/k"}}, "must not start with /"},
		{"jwt leeway", authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: "k", Leeway: authn.Duration(time.Hour)}}, "leeway"},
		{"jwt empty audience", authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: "k", Audience: []string{""}}}, "audience"},
		{"identity header invalid", authn.Policy{APIKey: &authn.APIKeyPolicy{}, IdentityHeader: "X Who"}, "not a valid header name"},
		{"identity header reserved", authn.Policy{APIKey: &authn.APIKeyPolicy{}, IdentityHeader: "authorization"}, "reserved"},
		{"api key header is the identity header", authn.Policy{APIKey: &authn.APIKeyPolicy{Header: "x-wolke-identity"}}, "differ"},
		{"basic without users", authn.Policy{Basic: &authn.BasicPolicy{}}, "no users"},
		{"basic plain password", authn.Policy{Basic: &authn.BasicPolicy{Users: map[string]string{"u": "pw"}}}, "not a bcrypt hash"},
		{"basic user with colon", authn.Policy{Basic: &authn.BasicPolicy{Users: map[string]string{"a:b": hash}}}, "user name"},
		{"basic realm with quote", authn.Policy{Basic: &authn.BasicPolicy{Realm: `a"b`, Users: map[string]string{"u": hash}}}, "realm"},
		{"forward without url", authn.Policy{Forward: &authn.ForwardPolicy{}}, "url is required"},
		{"forward bad url", authn.Policy{Forward: &authn.ForwardPolicy{URL: "auth:9000"}}, "want http(s)"},
		{"forward copies a reserved header", authn.Policy{Forward: &authn.ForwardPolicy{URL: "http://a/", CopyHeaders: []string{"Host"}}}, "reserved"},
		{"forward negative timeout", authn.Policy{Forward: &authn.ForwardPolicy{URL: "http://a/", Timeout: -1}}, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error %q spans lines", err)
			}
		})
	}
}

func TestPolicyJSON(t *testing.T) {
	doc := `{"jwt":{"jwks_key":"wolke/gateway/jwks","issuer":"https://i","audience":["api"],
	  "required_claims":{"scope":"orders"},"identity_claim":"email","leeway":"10s"},
	  "forward":{"url":"http://auth/check","timeout":"500ms","copy_headers":["X-User"]},
	  "identity_header":"X-User-Id"}`
	var p authn.Policy
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	if p.JWT.Leeway != authn.Duration(10*time.Second) || p.Forward.Timeout != authn.Duration(500*time.Millisecond) ||
		p.JWT.RequiredClaims["scope"] != "orders" || p.IdentityHeader != "X-User-Id" {
		t.Fatalf("decoded %+v %+v", p.JWT, p.Forward)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"jwt":{"leeway":30}}`), &p); err == nil {
		t.Fatal("a number was accepted as a duration")
	}
}

// TestIdentityCannotBeForged: whatever spelling a client uses for the identity header,
// the upstream sees exactly the identity the gateway established, or none.
func TestIdentityCannotBeForged(t *testing.T) {
	kv := &authntest.MemKV{}
	key := mustKey(t)
	kv.Put(authn.APIKeyPrefix+authn.HashAPIKey(key), apiKeyValue(t, "svc-a"))
	store := authn.NewAPIKeyStoreKV(kv, nil)
	startStore(t, store)
	for _, header := range []string{"", "X-User-Id"} {
		a := newAuth(t, authn.Policy{APIKey: &authn.APIKeyPolicy{}, IdentityHeader: header}, authn.Deps{APIKeys: store})
		want := header
		if want == "" {
			want = "X-Wolke-Identity"
		}
		norm := strings.ToLower(want)
		forged := []string{want + ": root", strings.ToLower(want) + ": root2", strings.ToUpper(want) + ": root3",
			strings.ReplaceAll(want, "-", "_") + ": root4", want + ": root5"}
		for _, withKey := range []bool{true, false} {
			lines := forged
			if withKey {
				lines = append(append([]string{}, forged...), "X-API-Key: "+key)
			}
			req := parseReq(t, lines...)
			res := a.Authenticate(req)
			var got []string
			for k, v := range req.Header.All() {
				if strings.ReplaceAll(strings.ToLower(string(k)), "_", "-") == norm {
					got = append(got, string(v))
				}
			}
			if withKey && (!res.OK || len(got) != 1 || got[0] != "svc-a") || !withKey && len(got) != 0 {
				t.Errorf("header %q, key %v: OK %v, upstream sees %q", want, withKey, res.OK, got)
			}
		}
	}

	// StripIdentity, for routes without auth.
	req := parseReq(t, "X-Wolke-Identity: root", "x_wolke_identity: root", "X-Other: kept")
	authn.StripIdentity(req, "")
	if ids := identities(req); len(ids) != 0 || string(req.Header.Peek("X-Other")) != "kept" {
		t.Fatalf("after StripIdentity: identities %q, X-Other %q", ids, req.Header.Peek("X-Other"))
	}
}

// TestSeveralMethods: any configured method may let a request through.
func TestSeveralMethods(t *testing.T) {
	k := keys(t)
	kv := &authntest.MemKV{}
	key := mustKey(t)
	kv.Put(authn.APIKeyPrefix+authn.HashAPIKey(key), apiKeyValue(t, "ci"))
	store := authn.NewAPIKeyStoreKV(kv, nil)
	startStore(t, store)
	p := jwtPolicy(writeFile(t, stdJWKS(t)))
	p.APIKey = &authn.APIKeyPolicy{}
	p.Basic = &authn.BasicPolicy{Users: map[string]string{"ops": bcryptHash(t, "pw")}}
	a := newAuth(t, p, authn.Deps{APIKeys: store, Now: func() time.Time { return testNow }})
	good := "Authorization: Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims())
	expired := "Authorization: Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims("exp", testNow.Add(-time.Hour).Unix()))
	noRole := "Authorization: Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "es1", claims("role", nil))

	tests := []struct {
		name      string
		lines     []string
		status    int
		method    string
		challenge string
	}{
		{"jwt", []string{good}, 200, "jwt", ""},
		{"api key", []string{"X-API-Key: " + key}, 200, "api_key", ""},
		{"basic", []string{basicHeader("ops", "pw")}, 200, "basic", ""},
		{"expired jwt, good api key", []string{expired, "X-API-Key: " + key}, 200, "api_key", ""},
		{"expired jwt alone", []string{expired}, 401, "jwt", "invalid_token"},
		{"jwt without the claim", []string{noRole}, 403, "jwt", "insufficient_scope"},
		{"nothing: every challenge", nil, 401, "", `Bearer realm="wolke", ApiKey realm="wolke", header="X-API-Key", Basic realm="wolke"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := a.Authenticate(parseReq(t, tc.lines...))
			status := res.Status
			if res.OK {
				status = 200
			}
			if status != tc.status || res.Method != tc.method || !strings.Contains(res.Challenge, tc.challenge) {
				t.Fatalf("status %d method %q challenge %q (%s); want %d %q %q", status, res.Method, res.Challenge, res.Reason, tc.status, tc.method, tc.challenge)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	var n json.Number = "12345678901234567890"
	r := authn.Result{Claims: map[string]any{"s": "x", "n": n, "b": true, "f": 1.5, "a": []any{"x"}}}
	for name, want := range map[string]string{"s": "x", "n": "12345678901234567890", "b": "true", "f": "1.5", "a": "", "missing": ""} {
		if got := r.Claim(name); got != want {
			t.Errorf("Claim(%q) = %q, want %q", name, got, want)
		}
	}
	if (authn.Result{}).Claim("sub") != "" {
		t.Error("Claim on a result without claims")
	}
}

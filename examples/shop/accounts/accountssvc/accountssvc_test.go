package accountssvc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// testEnv makes bcrypt cheap: the tests are about the protocol, not the work factor.
var testEnv = []string{"BCRYPT_COST=4"}

func post(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	resp, err := http.Post(url, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: %d, body not JSON: %v", url, resp.StatusCode, err)
	}
	if resp.StatusCode >= 400 {
		if msg, _ := out["error"].(string); msg == "" || len(out) != 1 {
			t.Fatalf("POST %s: %d without a JSON error: %v", url, resp.StatusCode, out)
		}
	}
	return resp.StatusCode, out
}

type reg struct {
	Email    string `json:"email"`
	Name     string `json:"name,omitempty"`
	Password string `json:"password"`
}

// authenticator is the gateway's JWT check, as the shop's policy for cart and orders
// configures it, reading the JWKS document from the agent's KV store.
func authenticator(t *testing.T, agent *shoptest.Agent) *authn.Authenticator {
	t.Helper()
	a, err := authn.New(authn.Policy{JWT: &authn.JWTPolicy{JWKSKey: KeyJWKS, Issuer: Issuer, Audience: []string{Audience}}},
		authn.Deps{KV: authn.NewConsulKV(agent.Consul)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func bearer(token string) *fasthttp.Request {
	req := &fasthttp.Request{}
	req.SetRequestURI("/cart")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Wolke-Identity", "forged")
	return req
}

func TestRegisterAndSignIn(t *testing.T) {
	agent := shoptest.StartAgent(t)
	svc := agent.Start(t, Service(), testEnv...)

	status, u := post(t, svc.URL+"/register", reg{Email: " Ada@Example.org ", Name: "Ada Lovelace", Password: "difference engine"})
	if status != 201 || u["email"] != "ada@example.org" || u["name"] != "Ada Lovelace" || len(u["id"].(string)) != 16 || len(u) != 3 {
		t.Fatalf("register: %d %v", status, u)
	}
	id := u["id"].(string)

	t.Run("register", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			body   any
			status int
		}{
			{"taken", reg{Email: "ada@example.org", Password: "another password"}, 409},
			{"taken in another case", reg{Email: "ADA@EXAMPLE.ORG", Password: "another password"}, 409},
			{"no name: the address's local part", reg{Email: "grace@example.org", Password: "12345678"}, 201},
			{"password of 7 characters", reg{Email: "bob@example.org", Password: "1234567"}, 400},
			{"8 characters, not bytes", reg{Email: "bob@example.org", Password: "äöüäöüä"}, 400},
			{"password over 72 bytes", reg{Email: "bob@example.org", Password: strings.Repeat("x", 73)}, 400},
			{"no @", reg{Email: "bob.example.org", Password: "12345678"}, 400},
			{"two @", reg{Email: "bob@x@example.org", Password: "12345678"}, 400},
			{"no domain dot", reg{Email: "bob@localhost", Password: "12345678"}, 400},
			{"a slash", reg{Email: "bob/../x@example.org", Password: "12345678"}, 400},
			{"a space", reg{Email: "bob smith@example.org", Password: "12345678"}, 400},
			{"empty email", reg{Password: "12345678"}, 400},
			{"name too long", reg{Email: "bob@example.org", Name: strings.Repeat("n", MaxName+1), Password: "12345678"}, 400},
			{"not JSON", "{", 400},
			{"unknown field", `{"email":"bob@example.org","password":"12345678","admin":true}`, 400},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if status, out := post(t, svc.URL+"/register", tt.body); status != tt.status {
					t.Fatalf("status %d, want %d: %v", status, tt.status, out)
				}
			})
		}
	})

	t.Run("signin", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			body   any
			status int
		}{
			{"wrong password", map[string]string{"email": "ada@example.org", "password": "difference engine!"}, 401},
			{"unknown email", map[string]string{"email": "nobody@example.org", "password": "difference engine"}, 401},
			{"invalid email", map[string]string{"email": "nobody", "password": "difference engine"}, 401},
			{"no body", "", 400},
			{"right, other case", map[string]string{"email": "ADA@example.org", "password": "difference engine"}, 200},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if status, out := post(t, svc.URL+"/signin", tt.body); status != tt.status {
					t.Fatalf("status %d, want %d: %v", status, tt.status, out)
				}
			})
		}
	})

	status, out := post(t, svc.URL+"/signin", map[string]string{"email": "ada@example.org", "password": "difference engine"})
	if status != 200 {
		t.Fatalf("signin: %d %v", status, out)
	}
	token := out["token"].(string)
	user := out["user"].(map[string]any)
	if user["id"] != id || user["email"] != "ada@example.org" || user["name"] != "Ada Lovelace" {
		t.Fatalf("signin user: %v", user)
	}
	exp, err := time.Parse(time.RFC3339, out["expires_at"].(string))
	if err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > time.Hour {
		t.Fatalf("expires_at %v (%v)", out["expires_at"], err)
	}

	t.Run("token claims", func(t *testing.T) {
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("token %q", token)
		}
		var header, payload map[string]any
		for i, v := range []*map[string]any{&header, &payload} {
			b, err := base64.RawURLEncoding.DecodeString(parts[i])
			if err != nil || json.Unmarshal(b, v) != nil {
				t.Fatalf("token part %d: %s", i, b)
			}
		}
		if header["alg"] != "RS256" || header["kid"] == "" {
			t.Fatalf("header %v", header)
		}
		want := map[string]any{"iss": "wolke-shop", "aud": []any{"shop"}, "sub": id, "email": "ada@example.org", "name": "Ada Lovelace", "role": "customer"}
		for k, v := range want {
			if fmt.Sprint(payload[k]) != fmt.Sprint(v) {
				t.Errorf("claim %s = %v, want %v", k, payload[k], v)
			}
		}
		if iat, exp := payload["iat"].(float64), payload["exp"].(float64); exp-iat != 3600 || int64(exp) != exp2unix(out) {
			t.Errorf("iat %v exp %v", iat, exp)
		}
	})

	t.Run("the gateway's JWT policy accepts the token", func(t *testing.T) {
		a := authenticator(t, agent)
		req := bearer(token)
		res := a.Authenticate(req)
		if !res.OK || res.Identity != id || res.Claim("role") != "customer" {
			t.Fatalf("refused: %+v", res)
		}
		if got := string(req.Header.Peek("X-Wolke-Identity")); got != id {
			t.Fatalf("identity header %q", got)
		}
		tampered := token[:len(token)-4] + "AAAA"
		if res := a.Authenticate(bearer(tampered)); res.OK || res.Status != 401 {
			t.Fatalf("tampered token: %+v", res)
		}
	})

	t.Run("jwks endpoint serves the published document", func(t *testing.T) {
		resp, err := http.Get(svc.URL + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		served, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pair, _, err := agent.Consul.KV().Get(KeyJWKS, nil)
		if err != nil || pair == nil || !bytes.Equal(pair.Value, served) {
			t.Fatalf("served %s, stored %v (%v)", served, pair, err)
		}
		var doc struct {
			Keys []map[string]string `json:"keys"`
		}
		if err := json.Unmarshal(served, &doc); err != nil || len(doc.Keys) != 1 {
			t.Fatalf("document %s", served)
		}
		k := doc.Keys[0]
		if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] == "" || k["n"] == "" || k["e"] != "AQAB" {
			t.Fatalf("key %v", k)
		}
	})
}

func exp2unix(out map[string]any) int64 {
	t, _ := time.Parse(time.RFC3339, out["expires_at"].(string))
	return t.Unix()
}

func TestRegistrationRace(t *testing.T) {
	agent := shoptest.StartAgent(t)
	a := agent.Start(t, Service(), testEnv...)
	b := agent.Start(t, Service(), testEnv...)
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := []string{a.URL, b.URL}[i%2] + "/register"
			body, _ := json.Marshal(reg{Email: "race@example.org", Password: fmt.Sprintf("password %d", i)})
			resp, err := http.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[409] != n-1 {
		t.Fatalf("answers %v, want one 201 and %d 409", count, n-1)
	}
}

func TestSigningKeyCreatedOnce(t *testing.T) {
	agent := shoptest.StartAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Instances starting at once: every one ends up with the one stored key.
	const n = 3
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := loadOrCreateKey(ctx, agent.Consul.KV())
			if err == nil {
				kids[i] = k.kid
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	pair, _, err := agent.Consul.KV().Get(KeySigningKey, nil)
	if err != nil || pair == nil {
		t.Fatalf("no key stored: %v", err)
	}
	stored, err := parseStoredKey(pair.Value)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil || kids[i] != stored.kid {
			t.Fatalf("instance %d: kid %q, %v; stored %q", i, kids[i], errs[i], stored.kid)
		}
	}

	// Two services: the same key, one JWKS entry, and each one's tokens pass the gateway.
	a := agent.Start(t, Service(), testEnv...)
	b := agent.Start(t, Service(), testEnv...)
	if status, out := post(t, a.URL+"/register", reg{Email: "x@example.org", Password: "12345678"}); status != 201 {
		t.Fatalf("register: %d %v", status, out)
	}
	auth := authenticator(t, agent)
	for _, svc := range []*shoptest.Service{a, b} {
		status, out := post(t, svc.URL+"/signin", map[string]string{"email": "x@example.org", "password": "12345678"})
		if status != 200 {
			t.Fatalf("signin: %d %v", status, out)
		}
		if res := auth.Authenticate(bearer(out["token"].(string))); !res.OK {
			t.Fatalf("token of %s refused: %+v", svc.ID(), res)
		}
	}
	pair, _, _ = agent.Consul.KV().Get(KeyJWKS, nil)
	var doc jwks
	if err := json.Unmarshal(pair.Value, &doc); err != nil || len(doc.Keys) != 1 || !strings.Contains(string(doc.Keys[0]), stored.kid) {
		t.Fatalf("JWKS document %s", pair.Value)
	}
}

func TestJWKSKeptPublished(t *testing.T) {
	agent := shoptest.StartAgent(t)
	svc := agent.Start(t, Service(), testEnv...)
	kv := agent.Consul.KV()
	pair, _, err := kv.Get(KeySigningKey, nil)
	if err != nil || pair == nil {
		t.Fatal("no signing key", err)
	}
	key, _ := parseStoredKey(pair.Value)

	waitFor := func(what string, cond func(doc jwks) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var doc jwks
			if pair, _, err := kv.Get(KeyJWKS, nil); err == nil && pair != nil && json.Unmarshal(pair.Value, &doc) == nil && cond(doc) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	has := func(doc jwks, s string) bool {
		for _, k := range doc.Keys {
			if strings.Contains(string(k), s) {
				return true
			}
		}
		return false
	}

	if _, err := kv.Delete(KeyJWKS, nil); err != nil {
		t.Fatal(err)
	}
	waitFor("the key back after a delete", func(doc jwks) bool { return len(doc.Keys) == 1 && has(doc, key.kid) })

	// Someone else's key is kept next to ours.
	other := `{"kty":"RSA","kid":"other","use":"sig","alg":"RS256","n":"xyz","e":"AQAB"}`
	if _, err := kv.Put(&api.KVPair{Key: KeyJWKS, Value: []byte(`{"keys":[` + other + `]}`)}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor("both keys", func(doc jwks) bool { return len(doc.Keys) == 2 && has(doc, key.kid) && has(doc, `"kid":"other"`) })
	_ = svc
}

func TestMerge(t *testing.T) {
	k := &signingKey{kid: "k1", jwk: jwk{Kty: "RSA", Kid: "k1", Alg: "RS256", Use: "sig", N: "nn", E: "AQAB"}}
	p := newPublisher(nil, k, nil)
	mine := `{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"nn","e":"AQAB"}`
	for _, tt := range []struct {
		name, doc, want string
		changed         bool
	}{
		{"none", ``, `{"keys":[` + mine + `]}`, true},
		{"not JSON", `garbage`, `{"keys":[` + mine + `]}`, true},
		{"empty set", `{"keys":[]}`, `{"keys":[` + mine + `]}`, true},
		{"ours already", `{"keys":[` + mine + `]}`, `{"keys":[` + mine + `]}`, false},
		{"ours among others", `{"keys":[{"kid":"a"},` + mine + `]}`, `{"keys":[{"kid":"a"},` + mine + `]}`, false},
		{"others", `{"keys":[{"kid":"a"}]}`, `{"keys":[` + mine + `,{"kid":"a"}]}`, true},
		{"ours, changed", `{"keys":[{"kid":"k1","n":"zz"}]}`, `{"keys":[` + mine + `]}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var in []byte
			if tt.doc != "" {
				in = []byte(tt.doc)
			}
			got, changed := p.merge(in)
			if string(got) != tt.want || changed != tt.changed {
				t.Fatalf("got %s, %v; want %s, %v", got, changed, tt.want, tt.changed)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for _, env := range [][]string{{"BCRYPT_COST=3"}, {"BCRYPT_COST=15"}, {"TOKEN_TTL=1s"}} {
		s := Service()
		s.LookupEnv = func(k string) (string, bool) {
			for _, kv := range env {
				if name, v, _ := strings.Cut(kv, "="); name == k {
					return v, true
				}
			}
			return "", false
		}
		s.Stdout = io.Discard
		if _, err := chassis.New(s); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
}

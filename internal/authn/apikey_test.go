package authn_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/authn/authntest"
)

func apiKeyValue(t testing.TB, name string, services ...string) []byte {
	t.Helper()
	b, err := json.Marshal(authn.APIKey{Name: name, Created: testNow, Services: services})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startStore(t testing.TB, s *authn.APIKeyStore) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
}

func TestAPIKey(t *testing.T) {
	kv := &authntest.MemKV{}
	key, scoped := mustKey(t), mustKey(t)
	kv.Put(authn.APIKeyPrefix+authn.HashAPIKey(key), apiKeyValue(t, "ci-bot"))
	kv.Put(authn.APIKeyPrefix+authn.HashAPIKey(scoped), apiKeyValue(t, "billing-job", "billing", "invoices"))
	kv.Put(authn.APIKeyPrefix+"not-a-hash", apiKeyValue(t, "ignored"))
	kv.Put(authn.APIKeyPrefix+strings.Repeat("ab", 32), []byte("not json"))
	store := authn.NewAPIKeyStoreKV(kv, nil)
	startStore(t, store)
	if store.Len() != 2 {
		t.Fatalf("store holds %d keys, want the 2 valid ones", store.Len())
	}
	cart := newAuth(t, authn.Policy{APIKey: &authn.APIKeyPolicy{}}, authn.Deps{APIKeys: store, Service: "cart"})
	billing := newAuth(t, authn.Policy{APIKey: &authn.APIKeyPolicy{Header: "X-Key"}}, authn.Deps{APIKeys: store, Service: "billing"})

	tests := []struct {
		name     string
		a        *authn.Authenticator
		headers  []string
		status   int
		identity string
	}{
		{"valid in X-API-Key", cart, []string{"X-API-Key: " + key}, 200, "ci-bot"},
		{"valid as Authorization: ApiKey", cart, []string{"Authorization: ApiKey " + key}, 200, "ci-bot"},
		{"scheme in lowercase", cart, []string{"Authorization: apikey " + key}, 200, "ci-bot"},
		{"valid in a custom header", billing, []string{"X-Key: " + key}, 200, "ci-bot"},
		{"custom header: X-API-Key is not it", billing, []string{"X-API-Key: " + key}, 401, ""},
		{"scoped key on its service", billing, []string{"X-Key: " + scoped}, 200, "billing-job"},
		{"scoped key on another service", cart, []string{"X-API-Key: " + scoped}, 403, ""},
		{"unknown key", cart, []string{"X-API-Key: " + mustKey(t)}, 401, ""},
		{"the key's hash is not the key", cart, []string{"X-API-Key: " + authn.HashAPIKey(key)}, 401, ""},
		{"missing", cart, nil, 401, ""},
		{"a bearer token is not an API key", cart, []string{"Authorization: Bearer " + key}, 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := parseReq(t, append(tc.headers, "X-Wolke-Identity: admin")...)
			res := tc.a.Authenticate(req)
			status := res.Status
			if res.OK {
				status = 200
			}
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, res.Reason, tc.status)
			}
			ids := identities(req)
			if res.OK && (len(ids) != 1 || ids[0] != tc.identity) || !res.OK && len(ids) != 0 {
				t.Fatalf("identity header %q, want [%s] on success and none otherwise", ids, tc.identity)
			}
			if status == 401 && !strings.HasPrefix(res.Challenge, "ApiKey ") {
				t.Errorf("challenge %q", res.Challenge)
			}
		})
	}
}

func mustKey(t testing.TB) string {
	t.Helper()
	k, err := authn.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k, "wk_") || len(k) != 3+43 {
		t.Fatalf("key %q: want wk_ and 43 base64url characters", k)
	}
	return k
}

// TestAPIKeyRevocationDevAgent: against a real agent, a key deleted from the KV store
// stops working within a second, through the store's blocking query.
func TestAPIKeyRevocationDevAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	ag := agenttest.StartDev(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client, err := api.NewClient(&api.Config{Address: ag.HTTPAddr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	store := authn.NewAPIKeyStore(client, nil)
	startStore(t, store)
	a := newAuth(t, authn.Policy{APIKey: &authn.APIKeyPolicy{}}, authn.Deps{APIKeys: store})

	key := mustKey(t)
	kvKey := authn.APIKeyPrefix + authn.HashAPIKey(key)
	ok := func() bool { return a.Authenticate(parseReq(t, "X-API-Key: "+key)).OK }
	if ok() {
		t.Fatal("a key not in the store was accepted")
	}
	if _, err := client.KV().Put(&api.KVPair{Key: kvKey, Value: apiKeyValue(t, "deploy-bot")}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "created key accepted", ok)
	if res := a.Authenticate(parseReq(t, "X-API-Key: "+key)); res.Identity != "deploy-bot" {
		t.Fatalf("identity %q", res.Identity)
	}
	if _, err := client.KV().Delete(kvKey, nil); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, "revoked key refused", func() bool { return !ok() })
	t.Logf("revocation took effect after %s", took)
	if res := a.Authenticate(parseReq(t, "X-API-Key: "+key)); res.Status != 401 {
		t.Fatalf("revoked key: %+v", res)
	}
}

func TestAPIKeyStoreLifecycle(t *testing.T) {
	kv := &authntest.MemKV{}
	s := authn.NewAPIKeyStoreKV(kv, nil)
	s.Close() // before Start: fine
	s2 := authn.NewAPIKeyStoreKV(kv, nil)
	startStore(t, s2)
	if err := s2.Start(context.Background()); err != nil { // again: no second watcher
		t.Fatal(err)
	}
	key := mustKey(t)
	kv.Put(authn.APIKeyPrefix+authn.HashAPIKey(key), apiKeyValue(t, "x"))
	eventually(t, time.Second, "key seen", func() bool { _, ok := s2.Lookup([]byte(key)); return ok })
	if _, err := authn.New(authn.Policy{APIKey: &authn.APIKeyPolicy{}}, authn.Deps{}); err == nil {
		t.Fatal("New without an API key store succeeded")
	}
}

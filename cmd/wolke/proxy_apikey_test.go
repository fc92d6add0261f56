package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/authn"
)

// proxyRootCmd is the root command with `wolke proxy`'s registered subcommands
// attached, whether or not newProxyCmd attaches them itself yet.
func proxyRootCmd() *cobra.Command {
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Name() != "proxy" {
			continue
		}
		have := map[string]bool{}
		for _, sub := range c.Commands() {
			have[sub.Name()] = true
		}
		for _, f := range proxySubcommands {
			if sub := f(); !have[sub.Name()] {
				c.AddCommand(sub)
			}
		}
	}
	return root
}

// runProxyCLI is runCLI for proxyRootCmd.
func runProxyCLI(t testing.TB, args ...string) cliResult {
	t.Helper()
	root := proxyRootCmd()
	root.SetArgs(normalizeArgs(root, args))
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(""))
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := 0
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(&errOut, "error:", err)
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

func mustProxyCLI(t testing.TB, args ...string) string {
	t.Helper()
	r := runProxyCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("wolke %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

var apiKeyRE = regexp.MustCompile(`^wk_[A-Za-z0-9_-]{43}\n$`)

// TestProxyAPIKeyLifecycle: create → list shows it → a gateway's store accepts it →
// revoke → gone from both.
func TestProxyAPIKeyLifecycle(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	flag := "-http-addr=" + addr
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	store := authn.NewAPIKeyStore(client, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := store.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	eventuallyTrue := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 1s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if out := mustProxyCLI(t, "proxy", "apikey", "list", flag); out != "" {
		t.Fatalf("list before any key: %q", out)
	}
	r := runProxyCLI(t, "proxy", "apikey", "create", "ci-bot", flag)
	if r.code != 0 || !apiKeyRE.MatchString(r.stdout) || !strings.Contains(r.stderr, "shown only this once") {
		t.Fatalf("create: %+v", r)
	}
	key := strings.TrimSpace(r.stdout)
	hash := authn.HashAPIKey(key)
	scoped := strings.TrimSpace(mustProxyCLI(t, "proxy", "apikey", "create", "billing-job", "-service", "billing", "-service", "invoices", flag))

	// Only the hash is stored.
	pairs, _, err := client.KV().List(authn.APIKeyPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if strings.Contains(string(p.Value), key) || strings.Contains(p.Key, key) {
			t.Fatalf("the key itself is stored at %s", p.Key)
		}
	}
	if len(pairs) != 2 {
		t.Fatalf("%d keys stored, want 2", len(pairs))
	}

	list := mustProxyCLI(t, "proxy", "apikey", "list", flag)
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!regexp.MustCompile(`^billing-job\s+[0-9a-f]{12}\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+billing,invoices$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^ci-bot\s+`+hash[:12]+`\s+\S+\s+\*$`).MatchString(lines[2]) {
		t.Fatalf("list:\n%s", list)
	}

	eventuallyTrue("store sees both keys", func() bool {
		a, ok1 := store.Lookup([]byte(key))
		b, ok2 := store.Lookup([]byte(scoped))
		return ok1 && ok2 && a.Name == "ci-bot" && b.Name == "billing-job" && len(b.Services) == 2
	})

	// Refusals: a used name, a bad name, unknown and ambiguous revokes.
	if r := runProxyCLI(t, "proxy", "apikey", "create", "ci-bot", flag); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("create with a used name: %+v", r)
	}
	if r := runProxyCLI(t, "proxy", "apikey", "create", "bad name", flag); r.code != 2 {
		t.Fatalf("create with a bad name: %+v", r)
	}
	if r := runProxyCLI(t, "proxy", "apikey", "revoke", "nobody", flag); r.code != 1 || !strings.Contains(r.stderr, "no API key") {
		t.Fatalf("revoke of an unknown key: %+v", r)
	}
	if r := runProxyCLI(t, "proxy", "apikey", "revoke", hash[:3], flag); r.code != 1 {
		t.Fatalf("revoke by a 3-digit prefix: %+v", r)
	}

	// Revoke by name, then by hash prefix.
	if out := mustProxyCLI(t, "proxy", "apikey", "revoke", "ci-bot", flag); !strings.Contains(out, "Revoked API key ci-bot (hash "+hash[:12]+")") {
		t.Fatalf("revoke: %q", out)
	}
	eventuallyTrue("store forgets the revoked key", func() bool { _, ok := store.Lookup([]byte(key)); return !ok })
	if list := mustProxyCLI(t, "proxy", "apikey", "list", flag); strings.Contains(list, "ci-bot") || !strings.Contains(list, "billing-job") {
		t.Fatalf("list after revoke:\n%s", list)
	}
	mustProxyCLI(t, "proxy", "apikey", "revoke", authn.HashAPIKey(scoped)[:8], flag)
	eventuallyTrue("store is empty", func() bool { return store.Len() == 0 })
	if out := mustProxyCLI(t, "proxy", "apikey", "list", flag); out != "" {
		t.Fatalf("list after revoking all: %q", out)
	}
}

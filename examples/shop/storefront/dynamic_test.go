package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// TestDynamicConfig runs the storefront as a service next to an in-process agent:
// it registers with the gateway's tags, and its sale banner and recommendations
// follow the KV store while it runs, without a restart.
func TestDynamicConfig(t *testing.T) {
	agent := agenttest.StartDev(t)
	gw := newFakeGateway(t)

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // before the agent's shutdown, which waits for them
	consul, err := api.NewClient(&api.Config{Address: agent.HTTPAddr(), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	kv := consul.KV()
	put := func(key, value string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "config/storefront/" + key, Value: []byte(value)}, nil); err != nil {
			t.Fatal(err)
		}
	}

	var cfg Config
	svc := service(&cfg)
	env := map[string]string{
		"GATEWAY_URL": gw.URL(), "WOLKE_HTTP_ADDR": agent.HTTPAddr(), "BIND_ADDR": "127.0.0.1",
		"DEREGISTER_WAIT": "10ms", "DRAIN_TIMEOUT": "2s", "START_TIMEOUT": "5s", "ACCESS_LOG": "false",
	}
	svc.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	svc.Stdout = io.Discard
	in, err := chassis.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})

	// Registered, with the gateway's catch-all route.
	var entry *api.CatalogService
	waitFor(t, 5*time.Second, "the storefront in the catalog", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		list, _, err := consul.Catalog().Service("storefront", "", nil)
		if err == nil && len(list) == 1 {
			entry = list[0]
		}
		return entry != nil
	})
	for _, tag := range []string{"wolke.http.path=/", "wolke.http.priority=-10", "wolke.cache=true"} {
		if !slices.Contains(entry.ServiceTags, tag) {
			t.Fatalf("tags %v: no %s", entry.ServiceTags, tag)
		}
	}

	base := "http://" + in.Addr()
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	body := func(path string) string {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return string(b)
	}
	// within waits up to a second (the bound) for cond on the page.
	within := func(what, path string, cond func(string) bool) {
		t.Helper()
		start := time.Now()
		waitFor(t, time.Second, what, func() bool { return cond(body(path)) })
		t.Logf("%s after %v", what, time.Since(start))
	}

	if p := body("/"); strings.Contains(p, `id="sale-banner"`) {
		t.Fatal("a banner before one was configured")
	}
	put(keyBanner, "Black Friday: 30 % off <everything>")
	within("banner shown", "/articles/l1", func(p string) bool {
		return strings.Contains(p, `<div id="sale-banner" role="status">Black Friday: 30 % off &lt;everything&gt;</div>`)
	})
	put(keyBanner, "Cyber Monday")
	within("banner changed", "/", func(p string) bool { return strings.Contains(p, `id="sale-banner" role="status">Cyber Monday<`) })
	if _, err := kv.Delete("config/storefront/"+keyBanner, nil); err != nil {
		t.Fatal(err)
	}
	within("banner gone", "/", func(p string) bool { return !strings.Contains(p, `id="sale-banner"`) })

	// Recommendations switched off: the page without them, not counted as degraded,
	// and without asking the recommendations service.
	if p := body("/articles/l1"); !strings.Contains(p, `id="recommendations"`) {
		t.Fatal("no recommendations while they are on")
	}
	put(keyShowRecs, "false")
	within("recommendations off", "/articles/l1", func(p string) bool { return !strings.Contains(p, `id="recommendations"`) })
	asked := len(gw.requests("/api/recommendations/"))
	resp, err := c.Get(base + "/articles/l2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Shop-Degraded") != "" || resp.Header.Get("Cache-Control") != pub30 {
		t.Fatalf("recommendations switched off: %v", resp.Header)
	}
	if n := len(gw.requests("/api/recommendations/")); n != asked {
		t.Fatalf("recommendations asked %d times while off", n-asked)
	}
	put(keyShowRecs, "true")
	within("recommendations on", "/articles/l1", func(p string) bool { return strings.Contains(p, `id="recommendations"`) })

	// The gateway's cache lifetime follows page_max_age.
	put(keyPageMaxAge, "2s")
	waitFor(t, time.Second, "page_max_age 2s", func() bool {
		resp, err := c.Get(base + "/departments/garden")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Cache-Control") == "public, max-age=2, stale-while-revalidate=2, stale-if-error=600"
	})
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

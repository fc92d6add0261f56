package servicewatch

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

// startAgent starts an in-memory dev agent on free ports and returns a client for it
// and the client's transport.
func startAgent(t testing.TB) (*api.Client, *http.Transport) {
	t.Helper()
	a := agenttest.StartDev(t)
	// Close the idle connections before the agent stops (cleanups run last-registered
	// first), or its drain waits for them.
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c, tr
}

func newWatcher(t testing.TB, c *api.Client) *Watcher {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client = c
	w := New(cfg)
	t.Cleanup(w.Close)
	return w
}

// changes collects OnChange calls on a channel.
func changes(w *Watcher) <-chan string {
	ch := make(chan string, 1000)
	w.OnChange(func(service string, list []Instance) { ch <- service + ":" + ids(list) })
	return ch
}

// expect waits for the change want on ch (skipping others) and returns when it came.
func expect(t testing.TB, ch <-chan string, want string) time.Time {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return time.Now()
			}
		case <-timeout:
			t.Fatalf("no change %q within 5s", want)
		}
	}
}

func register(t testing.TB, c *api.Client, name, id string, ttl bool) {
	t.Helper()
	reg := &api.AgentServiceRegistration{ID: id, Name: name, Port: 8080, Address: "127.0.0.1", Tags: []string{"v1"},
		Weights: &api.AgentWeights{Passing: 3, Warning: 1}}
	if ttl {
		reg.Check = &api.AgentServiceCheck{TTL: "1m"}
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
}

func TestServiceFollowsHealth(t *testing.T) {
	c, _ := startAgent(t)
	w := newWatcher(t, c)
	ch := changes(w)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	list, err := w.Service(ctx, "web")
	if err != nil || len(list) != 0 {
		t.Fatalf("Service(web) before registration = %v, %v; want empty", list, err)
	}
	expect(t, ch, "web:")

	// A TTL check starts critical: registered but not passing.
	register(t, c, "web", "web-1", true)
	checkID := "service:web-1"
	if err := c.Agent().UpdateTTL(checkID, "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, "web:web-1")
	list, _ = w.Service(ctx, "web")
	if len(list) != 1 || list[0].Port != 8080 || list[0].Address != "127.0.0.1" || list[0].Weight != 3 ||
		!slices.Equal(list[0].Tags, []string{"v1"}) || list[0].Node == "" {
		t.Fatalf("instance %+v", list)
	}

	// 20 rounds of failing and passing: every change arrives, and quickly.
	var lat []time.Duration
	for i := range 20 {
		status, want := api.HealthCritical, "web:"
		if i%2 == 1 {
			status, want = api.HealthPassing, "web:web-1"
		}
		start := time.Now()
		if err := c.Agent().UpdateTTL(checkID, "", status); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, expect(t, ch, want).Sub(start))
		if got, _ := w.Service(ctx, "web"); ids(got) != strings.TrimPrefix(want, "web:") {
			t.Fatalf("Service(web) = %q after the change %q", ids(got), want)
		}
	}
	slices.Sort(lat)
	p99 := lat[(len(lat)*99+99)/100-1]
	t.Logf("OnChange latency over %d rounds: p50 %v, p99 %v", len(lat), lat[len(lat)/2], p99)
	if p99 > 500*time.Millisecond {
		t.Errorf("OnChange p99 latency %v, want well under 1s", p99)
	}
}

func TestWatchCatalog(t *testing.T) {
	c, _ := startAgent(t)
	w := newWatcher(t, c)
	ch := changes(w)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.WatchCatalog(ctx) }()

	register(t, c, "api", "api-1", false) // no checks: passing
	expect(t, ch, "api:api-1")
	if err := w.WatchCatalog(ctx); !errors.Is(err, ErrCatalogWatched) {
		t.Errorf("a second WatchCatalog: %v, want ErrCatalogWatched", err)
	}
	if got := w.Snapshot()["api"]; ids(got) != "api-1" {
		t.Errorf("Snapshot()[api] = %q", ids(got))
	}
	if err := c.Agent().ServiceDeregister("api-1"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, "api:")
	waitFor(t, 5*time.Second, "api to leave the snapshot", func() bool {
		_, ok := w.Snapshot()["api"]
		return !ok
	})
	// Registered again, it is watched again.
	register(t, c, "api", "api-2", false)
	expect(t, ch, "api:api-2")

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WatchCatalog returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchCatalog did not return after its context ended")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	c, tr := startAgent(t)
	register(t, c, "d", "d-1", false)
	tr.CloseIdleConnections()
	base := runtime.NumGoroutine()

	cfg := DefaultConfig()
	cfg.Client = c
	w := New(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"a", "b", "c"} {
		if _, err := w.Service(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.WatchCatalog(context.Background()) })
	waitFor(t, 5*time.Second, "the catalog's service d to be watched", func() bool { return len(w.Snapshot()["d"]) == 1 })
	w.Close()
	wg.Wait()
	if _, err := w.Service(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Service after Close: %v, want ErrClosed", err)
	}
	if err := w.WatchCatalog(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("WatchCatalog after Close: %v, want ErrClosed", err)
	}
	w.Close() // twice is fine

	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before New:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Service answers from memory: concurrent callers, no allocation.
func TestServiceFromMemory(t *testing.T) {
	c, _ := startAgent(t)
	w := newWatcher(t, c)
	register(t, c, "web", "web-1", false)
	ctx := t.Context()
	waitFor(t, 5*time.Second, "web-1", func() bool { l, err := w.Service(ctx, "web"); return err == nil && len(l) == 1 })
	if n := testing.AllocsPerRun(100, func() { _, _ = w.Service(ctx, "web") }); n != 0 {
		t.Errorf("%v allocs per Service from memory", n)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if l, err := w.Service(ctx, "web"); err != nil || len(l) != 1 {
					t.Errorf("Service(web) = %v, %v", l, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkService(b *testing.B) {
	c, _ := startAgent(b)
	w := newWatcher(b, c)
	ctx := context.Background()
	if _, err := w.Service(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = w.Service(ctx, "web")
		}
	})
}

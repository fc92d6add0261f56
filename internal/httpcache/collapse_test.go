package httpcache

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// concurrently sends n GETs for url at once, with the origin held until at least
// one of them reached it, and returns their bodies and Cache-Status values.
func concurrently(t *testing.T, c *Cache, o *origin, release chan struct{}, n int) (bodies, statuses []string) {
	t.Helper()
	bodies, statuses = make([]string, n), make([]string, n)
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ctx := new(fasthttp.RequestCtx)
			ctx.Request.SetRequestURI(url)
			started.Done()
			statuses[i] = c.Serve(ctx, o.fetch)
			bodies[i] = string(ctx.Response.Body())
		}()
	}
	started.Wait()
	for o.calls.Load() == 0 {
		runtime.Gosched()
	}
	for range 100 { // let the others queue up behind the first
		runtime.Gosched()
	}
	close(release)
	done.Wait()
	return bodies, statuses
}

func TestCollapsedMisses(t *testing.T) {
	c, _ := newTestCache(t, nil)
	release := make(chan struct{})
	o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		<-release
		reply(resp, 200, "v"+strconv.FormatInt(n, 10), "Cache-Control", "max-age=60")
		return nil
	}}
	const n = 100
	bodies, statuses := concurrently(t, c, o, release, n)
	if calls := o.calls.Load(); calls != 1 {
		t.Fatalf("%d upstream requests for %d concurrent misses, want 1", calls, n)
	}
	counts := map[string]int{}
	for i := range n {
		if bodies[i] != "v1" {
			t.Fatalf("request %d got %q", i, bodies[i])
		}
		counts[statuses[i]]++
	}
	if counts["wolke; fwd=miss; stored"] != 1 || counts["wolke; fwd=miss; collapsed"]+counts[statusHit] != n-1 {
		t.Fatalf("statuses %v", counts)
	}
	if s := c.Stats(); s.Collapsed != uint64(counts["wolke; fwd=miss; collapsed"]) {
		t.Fatalf("Collapsed %d, statuses %v", s.Collapsed, counts)
	}
}

// When the one response turns out not storable it cannot be shared: every
// waiter sends its own request, and each client gets its own response.
func TestCollapsedMissesUncacheable(t *testing.T) {
	c, _ := newTestCache(t, nil)
	release := make(chan struct{})
	o := &origin{handle: func(n int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		<-release
		reply(resp, 200, "for-"+strconv.FormatInt(n, 10), "Cache-Control", "private, max-age=60")
		return nil
	}}
	const n = 20
	bodies, statuses := concurrently(t, c, o, release, n)
	if calls := o.calls.Load(); calls != n {
		t.Fatalf("%d upstream requests, want %d", calls, n)
	}
	seen := map[string]bool{}
	for i := range n {
		if seen[bodies[i]] || !strings.HasPrefix(bodies[i], "for-") {
			t.Fatalf("request %d got %q (bodies %v)", i, bodies[i], bodies)
		}
		seen[bodies[i]] = true
		if st := statuses[i]; st != "wolke; fwd=miss" && st != "wolke; fwd=miss; collapsed=?0" {
			t.Fatalf("request %d: %s", i, st)
		}
	}
}

// After a response that could not be stored, misses on the key go upstream side
// by side instead of queuing behind one another.
func TestPassMarkerStopsCollapsing(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: static(200, "x", "Cache-Control", "no-store")}
	get(t, c, o.fetch, url)

	block, inFetch := make(chan struct{}), make(chan struct{}, 2)
	o.handle = func(_ int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		inFetch <- struct{}{}
		<-block
		reply(resp, 200, "x", "Cache-Control", "no-store")
		return nil
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := new(fasthttp.RequestCtx)
			ctx.Request.SetRequestURI(url)
			c.Serve(ctx, o.fetch)
		}()
	}
	<-inFetch
	select {
	case <-inFetch: // both reached the origin while neither had its answer
	case <-time.After(5 * time.Second):
		close(block)
		wg.Wait()
		t.Fatal("the second miss waited for the first")
	}
	close(block)
	wg.Wait()

	// A storable response clears the marker.
	o.handle = versioned("Cache-Control", "max-age=60")
	if _, st := get(t, c, o.fetch, url); st != "wolke; fwd=miss; stored" {
		t.Fatalf("storable after marker: %s", st)
	}
	if _, st := get(t, c, o.fetch, url); st != statusHit {
		t.Fatalf("then: %s", st)
	}
}

// Concurrent revalidations of one stale object send one conditional request.
func TestCollapsedRevalidation(t *testing.T) {
	c, clk := newTestCache(t, nil)
	o := etagOrigin(`"r"`, "body", "max-age=10")
	get(t, c, o.fetch, url)
	clk.Advance(20 * time.Second)

	release := make(chan struct{})
	inner := o.handle
	o.handle = func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		<-release
		return inner(n, req, resp)
	}
	o.calls.Store(0)
	bodies, _ := concurrently(t, c, o, release, 50)
	if calls := o.calls.Load(); calls != 1 {
		t.Fatalf("%d revalidations, want 1", calls)
	}
	for i, b := range bodies {
		if b != "body" {
			t.Fatalf("request %d got %q", i, b)
		}
	}
}

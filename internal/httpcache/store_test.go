package httpcache

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// checkStore verifies the store's bookkeeping: the LRU ring and the groups hold
// the same entries, and bytes and objects add up within the bound.
func checkStore(tb testing.TB, s *store) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var bytes, objects int64
	inRing := map[*entry]bool{}
	for e := s.root.next; e != &s.root; e = e.next {
		if e.next.prev != e {
			tb.Fatal("LRU ring links broken")
		}
		inRing[e] = true
		bytes += e.size
		if !e.marker {
			objects++
		}
	}
	n := 0
	for key, g := range s.groups {
		if len(g.entries) == 0 && g.marker == nil {
			tb.Fatalf("empty group %q kept", key)
		}
		for _, e := range g.entries {
			if !inRing[e] || e.key != key {
				tb.Fatalf("entry of %q not in the ring", key)
			}
			n++
		}
		if g.marker != nil {
			if !inRing[g.marker] {
				tb.Fatalf("marker of %q not in the ring", key)
			}
			n++
		}
	}
	if n != len(inRing) || bytes != s.bytes || objects != s.objects || s.bytes > s.maxBytes {
		tb.Fatalf("ring %d, groups %d, bytes %d/%d (max %d), objects %d/%d", len(inRing), n, bytes, s.bytes, s.maxBytes, objects, s.objects)
	}
}

func TestLRUEviction(t *testing.T) {
	body := strings.Repeat("b", 1000)
	o := &origin{handle: static(200, body, "Cache-Control", "max-age=600")}
	probe, _ := newTestCache(t, nil)
	get(t, probe, o.fetch, "http://h.example/a")
	size := probe.Stats().Bytes // all test keys have the same length

	c, _ := newTestCache(t, func(cfg *Config) { cfg.MaxBytes = 3*size + size/2 })
	for _, k := range []string{"a", "b", "c"} {
		get(t, c, o.fetch, "http://h.example/"+k)
	}
	get(t, c, o.fetch, "http://h.example/a") // a is now the most recently used
	get(t, c, o.fetch, "http://h.example/d") // evicts b, the least
	checkStore(t, c.store)
	if s := c.Stats(); s.Objects != 3 || s.Evictions != 1 || s.Bytes > 3*size+size/2 {
		t.Fatalf("stats %+v", s)
	}
	for k, want := range map[string]string{"a": statusHit, "c": statusHit, "d": statusHit} {
		if _, st := get(t, c, o.fetch, "http://h.example/"+k); st != want {
			t.Fatalf("%s: %s, want %s", k, st, want)
		}
	}
	if _, st := get(t, c, o.fetch, "http://h.example/b"); st != "wolke; fwd=miss; stored" {
		t.Fatalf("b: %s, want evicted", st)
	}
}

func TestObjectLargerThanCache(t *testing.T) {
	c, _ := newTestCache(t, func(cfg *Config) { cfg.MaxBytes = 2000 })
	o := &origin{handle: static(200, strings.Repeat("x", 1900), "Cache-Control", "max-age=60")}
	ctx, st := get(t, c, o.fetch, url)
	expect(t, ctx, st, "wolke; fwd=miss", 200, strings.Repeat("x", 1900))
	checkStore(t, c.store)
}

func TestVariantsBounded(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "Vary", "X-Id")}
	for i := range maxVariants + 10 {
		get(t, c, o.fetch, url, "X-Id", strconv.Itoa(i))
	}
	checkStore(t, c.store)
	if s := c.Stats(); s.Objects != maxVariants {
		t.Fatalf("%d variants, want %d", s.Objects, maxVariants)
	}
	if _, st := get(t, c, o.fetch, url, "X-Id", strconv.Itoa(maxVariants+9)); st != statusHit {
		t.Fatalf("newest variant: %s", st)
	}
	if _, st := get(t, c, o.fetch, url, "X-Id", "0"); st != "wolke; fwd=vary-miss; stored" {
		t.Fatalf("oldest variant: %s", st)
	}
}

func TestVaryChangeDropsOldVariants(t *testing.T) {
	c, _ := newTestCache(t, nil)
	o := &origin{handle: versioned("Cache-Control", "max-age=60", "Vary", "X-A")}
	get(t, c, o.fetch, url, "X-A", "1")
	get(t, c, o.fetch, url, "X-A", "2")
	o.handle = versioned("Cache-Control", "max-age=60", "Vary", "X-B")
	get(t, c, o.fetch, url, "X-A", "3", "X-B", "1")
	checkStore(t, c.store)
	if s := c.Stats(); s.Objects != 1 {
		t.Fatalf("%d objects, want 1", s.Objects)
	}
}

// Many goroutines doing everything at once, for the race detector and the
// store's bookkeeping.
func TestConcurrentUse(t *testing.T) {
	c, clk := newTestCache(t, func(cfg *Config) { cfg.MaxBytes = 40 << 10 })
	o := &origin{handle: func(n int64, req *fasthttp.Request, resp *fasthttp.Response) error {
		switch n % 7 {
		case 0:
			reply(resp, 503, "down")
		case 1:
			reply(resp, 200, "p", "Cache-Control", "private")
		default:
			if len(req.Header.Peek("If-None-Match")) > 0 && n%2 == 0 {
				reply(resp, 304, "", "Cache-Control", "max-age=2, stale-while-revalidate=2, stale-if-error=5", "ETag", `"t"`)
				return nil
			}
			reply(resp, 200, strings.Repeat("z", int(n%5)*300), "Cache-Control", "max-age=2, stale-while-revalidate=2, stale-if-error=5",
				"ETag", `"t"`, "Vary", "X-V")
		}
		return nil
	}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 400 {
				ctx := new(fasthttp.RequestCtx)
				ctx.Request.SetRequestURI("http://h.example/k" + strconv.Itoa(rng.IntN(30)))
				ctx.Request.Header.Set("X-V", strconv.Itoa(rng.IntN(3)))
				switch rng.IntN(20) {
				case 0:
					ctx.Request.Header.SetMethod(fasthttp.MethodPost)
				case 1:
					ctx.Request.Header.SetMethod(fasthttp.MethodHead)
				case 2:
					ctx.Request.Header.Set("Cache-Control", "no-cache")
				case 3:
					c.Purge("h.example/k1")
				case 4:
					clk.Advance(time.Second)
				}
				c.Serve(ctx, o.fetch)
				bodyOf(t, ctx)
			}
		}()
	}
	wg.Wait()
	c.wait()
	checkStore(t, c.store)
	if s := c.Stats(); s.Hits == 0 || s.Evictions == 0 {
		t.Fatalf("workload too tame: %+v", s)
	}
}

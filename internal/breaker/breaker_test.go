package breaker

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/fakeclock"
)

type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New() }

func newBreaker(t testing.TB, c *clock, changes *[]string) *Breaker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Now = c.Now
	var mu sync.Mutex
	cfg.OnStateChange = func(from, to State) {
		if changes != nil {
			mu.Lock()
			*changes = append(*changes, from.String()+">"+to.String())
			mu.Unlock()
		}
	}
	return New(cfg)
}

// run sends n requests with the given outcome through b and reports how many were
// admitted.
func run(b *Breaker, n int, success bool) int {
	admitted := 0
	for range n {
		if t, ok := b.Allow(); ok {
			admitted++
			b.Done(t, success)
		}
	}
	return admitted
}

// trip opens b with 20 failures.
func trip(t testing.TB, b *Breaker) {
	t.Helper()
	run(b, 20, false)
	if s := b.State(); s != Open {
		t.Fatalf("state %v after 20 failures, want open", s)
	}
}

func TestOpensAtRatio(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ok, failed int // successes first, then failures
		ratio      float64
		want       State
	}{
		{"half of 20 fail", 10, 10, 0.5, Open},
		{"9 of 20 fail", 11, 9, 0.5, Closed},
		{"below min requests", 5, 14, 0.5, Closed},
		{"19 failures alone", 0, 19, 0.5, Closed},
		{"20 failures", 0, 20, 0.5, Open},
		{"a quarter at 0.25", 30, 10, 0.25, Open},
		{"a fifth at 0.25", 40, 10, 0.25, Closed},
		{"no failures", 100, 0, 0.5, Closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Now = newClock().Now
			cfg.FailureRatio = tc.ratio
			b := New(cfg)
			run(b, tc.ok, true)
			run(b, tc.failed, false)
			if s := b.State(); s != tc.want {
				t.Errorf("state %v, want %v", s, tc.want)
			}
		})
	}
}

// A success never opens the breaker: the ratio is judged at the next failure.
func TestSuccessDoesNotOpen(t *testing.T) {
	b := newBreaker(t, newClock(), nil)
	run(b, 19, false)
	run(b, 1, true) // 20 requests, 95% failures
	if s := b.State(); s != Closed {
		t.Fatalf("state %v after a success, want closed", s)
	}
	run(b, 1, false)
	if s := b.State(); s != Open {
		t.Fatalf("state %v after the next failure, want open", s)
	}
}

func TestOpenRejectsAndCountsDown(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, nil)
	if d := b.RetryAfter(); d != 0 {
		t.Errorf("closed: RetryAfter %v, want 0", d)
	}
	trip(t, b)
	for _, step := range []struct {
		advance time.Duration
		want    time.Duration
		state   State
	}{
		{0, 5 * time.Second, Open},
		{2 * time.Second, 3 * time.Second, Open},
		{2999 * time.Millisecond, time.Millisecond, Open},
		{time.Millisecond, 0, HalfOpen},
	} {
		c.Advance(step.advance)
		if d := b.RetryAfter(); d != step.want {
			t.Errorf("RetryAfter %v, want %v", d, step.want)
		}
		if s := b.State(); s != step.state {
			t.Errorf("state %v, want %v", s, step.state)
		}
		if step.state == Open {
			if n := run(b, 10, true); n != 0 {
				t.Errorf("open: %d requests admitted", n)
			}
		}
	}
}

func TestHalfOpenProbes(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, nil)
	trip(t, b)
	c.Advance(5 * time.Second)

	// Five probes at once, not six.
	var tickets []Ticket
	for range 5 {
		tk, ok := b.Allow()
		if !ok {
			t.Fatalf("probe %d rejected", len(tickets)+1)
		}
		tickets = append(tickets, tk)
	}
	if _, ok := b.Allow(); ok {
		t.Fatal("a sixth concurrent probe was admitted")
	}
	// A finished probe frees its slot.
	b.Done(tickets[0], true)
	tk, ok := b.Allow()
	if !ok {
		t.Fatal("no probe admitted after one finished")
	}
	tickets = append(tickets[1:], tk)
	// One success so far; four more close it.
	for i, tk := range tickets[:4] {
		if s := b.State(); s != HalfOpen {
			t.Fatalf("state %v after %d successful probes, want half-open", s, i+1)
		}
		b.Done(tk, true)
	}
	if s := b.State(); s != Closed {
		t.Fatalf("state %v after 5 successful probes, want closed", s)
	}
	b.Done(tickets[4], false) // the last probe, now stale
	// The window starts clean: the failures that opened it are forgotten.
	run(b, 1, false)
	if s := b.State(); s != Closed {
		t.Fatalf("state %v after one failure in a fresh window, want closed", s)
	}
}

func TestFailedProbeReopens(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, nil)
	trip(t, b)
	c.Advance(5 * time.Second)
	t1, _ := b.Allow()
	t2, _ := b.Allow()
	b.Done(t1, true)
	b.Done(t2, false)
	if s := b.State(); s != Open {
		t.Fatalf("state %v after a failed probe, want open", s)
	}
	if d := b.RetryAfter(); d != 5*time.Second {
		t.Errorf("RetryAfter %v, want a fresh 5s", d)
	}
}

// Outcomes that arrive after the state changed do not count.
func TestStaleTickets(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, nil)
	old, _ := b.Allow() // admitted while closed
	trip(t, b)
	c.Advance(5 * time.Second)
	probe, _ := b.Allow()
	b.Done(old, false) // a closed-era failure must not re-open the half-open breaker
	if s := b.State(); s != HalfOpen {
		t.Fatalf("state %v after a stale failure, want half-open", s)
	}
	run(b, 5, true)
	if s := b.State(); s != Closed {
		t.Fatalf("state %v, want closed", s)
	}
	b.Done(probe, false) // a probe of the finished half-open episode
	b.Done(Ticket{}, false)
	if s := b.State(); s != Closed {
		t.Fatalf("state %v after stale failures, want closed", s)
	}
}

func TestWindowSlides(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  time.Duration // between 10 failures and 10 successes + 1 failure
		want State
	}{
		{"within the window", 5 * time.Second, Open},
		{"old failures slid out", 11 * time.Second, Closed},
		{"just inside", 9 * time.Second, Open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			b := newBreaker(t, c, nil)
			run(b, 10, false)
			c.Advance(tc.gap)
			run(b, 10, true)
			run(b, 1, false)
			if s := b.State(); s != tc.want {
				t.Errorf("state %v, want %v", s, tc.want)
			}
		})
	}
}

func TestOnStateChange(t *testing.T) {
	c := newClock()
	var changes []string
	b := newBreaker(t, c, &changes)
	trip(t, b)
	c.Advance(5 * time.Second)
	run(b, 1, false) // probe fails
	c.Advance(5 * time.Second)
	run(b, 5, true)
	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}

// The callback may call back into the breaker (it runs outside the locks).
func TestOnStateChangeReentrant(t *testing.T) {
	c := newClock()
	var b *Breaker
	var seen []State
	cfg := DefaultConfig()
	cfg.Now = c.Now
	cfg.OnStateChange = func(_, to State) { seen = append(seen, b.State()) }
	b = New(cfg)
	trip(t, b)
	if len(seen) != 1 || seen[0] != Open {
		t.Fatalf("callback saw %v, want [open]", seen)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"zero config", func(c *Config) { *c = Config{} }, true},
		{"negative window", func(c *Config) { c.Window = -1 }, false},
		{"tiny window", func(c *Config) { c.Window = 5 }, false},
		{"negative min requests", func(c *Config) { c.MinRequests = -1 }, false},
		{"ratio above 1", func(c *Config) { c.FailureRatio = 1.5 }, false},
		{"ratio 1", func(c *Config) { c.FailureRatio = 1 }, true},
		{"negative open timeout", func(c *Config) { c.OpenTimeout = -time.Second }, false},
		{"negative probes", func(c *Config) { c.HalfOpenProbes = -1 }, false},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v does not wrap ErrInvalidConfig", tc.name, err)
		}
	}
}

// Many goroutines drive the breaker through its states while the clock moves; the
// probe limit holds throughout (run with -race).
func TestConcurrent(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, nil)
	var probes, maxProbes atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 3000 {
				if g == 0 && i%50 == 0 {
					c.Advance(time.Second)
				}
				tk, ok := b.Allow()
				if !ok {
					_ = b.RetryAfter()
					continue
				}
				if tk.probe {
					n := probes.Add(1)
					for m := maxProbes.Load(); n > m && !maxProbes.CompareAndSwap(m, n); m = maxProbes.Load() {
					}
				}
				success := rand.IntN(3) != 0
				if tk.probe {
					probes.Add(-1)
				}
				b.Done(tk, success)
			}
		})
	}
	wg.Wait()
	if m := maxProbes.Load(); m > 5 {
		t.Errorf("%d probes in flight at once, want at most 5", m)
	}
}

func TestAllowDoneDoesNotAllocate(t *testing.T) {
	b := New(DefaultConfig())
	if n := testing.AllocsPerRun(1000, func() {
		tk, _ := b.Allow()
		b.Done(tk, true)
	}); n != 0 {
		t.Errorf("%v allocs per Allow+Done", n)
	}
}

func BenchmarkAllowDone(b *testing.B) {
	br := New(DefaultConfig())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, _ := br.Allow()
			br.Done(tk, true)
		}
	})
}

package adaptive

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", DefaultConfig(), true},
		{"zero value", Config{}, true},
		{"only a low max", Config{MaxLimit: 10}, true},
		{"only a high min", Config{MinLimit: 50}, true},
		{"negative limit", Config{MinLimit: -1}, false},
		{"min above max", Config{MinLimit: 20, MaxLimit: 10}, false},
		{"initial below min", Config{InitialLimit: 2, MinLimit: 4}, false},
		{"initial above max", Config{InitialLimit: 200, MaxLimit: 100}, false},
		{"smoothing above 1", Config{Smoothing: 1.5}, false},
		{"NaN smoothing", Config{Smoothing: math.NaN()}, false},
		{"tolerance below 1", Config{Tolerance: 0.9}, false},
		{"negative window", Config{Window: -time.Second}, false},
		{"negative probe interval", Config{ProbeInterval: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
	d := Config{MaxLimit: 10}.withDefaults()
	if d.MinLimit != 4 || d.InitialLimit != 10 {
		t.Errorf("MaxLimit 10 alone: MinLimit %d InitialLimit %d, want 4, 10", d.MinLimit, d.InitialLimit)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New with an invalid config did not panic")
		}
	}()
	New(Config{Tolerance: 0.5})
}

// A new limiter measures the latency at InitialLimit first; Acquire fails fast at
// the limit; the zero Token is ignored by Release.
func TestStartAndFailFast(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var changes []int
	l := New(Config{InitialLimit: 4, MinLimit: 4, Now: func() time.Time { return now }, OnLimitChange: func(n int) { changes = append(changes, n) }})
	if l.Limit() != 4 {
		t.Fatalf("Limit() = %d while measuring the first latency, want InitialLimit 4", l.Limit())
	}
	var toks []Token
	for i := range 4 {
		tok, ok := l.Acquire()
		if !ok {
			t.Fatalf("Acquire %d refused below the limit", i)
		}
		toks = append(toks, tok)
	}
	tok, ok := l.Acquire()
	if ok || tok != (Token{}) {
		t.Fatalf("Acquire at the limit = %v, %v; want the zero Token, false", tok, ok)
	}
	if l.Inflight() != 4 {
		t.Fatalf("Inflight() = %d, want 4", l.Inflight())
	}
	l.Release(tok, time.Second, true) // the refused one: ignored
	if l.Inflight() != 4 {
		t.Fatalf("releasing the zero Token changed Inflight() to %d", l.Inflight())
	}
	l.Release(toks[0], 10*time.Millisecond, false)
	if _, ok := l.Acquire(); !ok {
		t.Fatal("Acquire refused after a Release")
	}
	for range 3 {
		l.Release(toks[1], 10*time.Millisecond, false) // tokens are values: any admitted one will do
	}
	// 10 samples end the measurement: the limit stays InitialLimit, baseline 10ms.
	for range 6 {
		tok, _ := l.Acquire()
		now = now.Add(10 * time.Millisecond)
		l.Release(tok, 10*time.Millisecond, false)
	}
	if l.Limit() != 4 || len(changes) != 0 {
		t.Fatalf("after the measurement: Limit() = %d, changes %v; want 4, []", l.Limit(), changes)
	}
	if l.long != float64(10*time.Millisecond) {
		t.Fatalf("baseline %v, want 10ms", time.Duration(l.long))
	}
	l.Release(Token{}, 0, false)
	if l.Inflight() != 1 {
		t.Fatalf("Inflight() = %d, want 1", l.Inflight())
	}
}

// The limiter finds the capacity of the simulated upstream from a low and from a high
// initial limit, for upstreams of 1ms, 20ms and 1s, under twice the load they can
// take: the limit settles within 0.7..2 × capacity, the excess is shed, and the
// requests admitted see less than twice the no-load latency at (nearly) full
// throughput. Without the limiter, latency would grow without bound.
func TestConvergesToCapacity(t *testing.T) {
	for _, tc := range []struct {
		name            string
		capacity        int
		base            time.Duration
		warmup, measure time.Duration
	}{
		{"1ms", 16, time.Millisecond, 5 * time.Second, time.Second},
		{"20ms", 30, 20 * time.Millisecond, 8 * time.Second, 4 * time.Second},
		{"1s", 50, time.Second, 60 * time.Second, 60 * time.Second},
	} {
		for _, initial := range []int{5, 1000} {
			t.Run(tc.name+"/initial "+strconv.Itoa(initial), func(t *testing.T) {
				maxThroughput := float64(tc.capacity) / tc.base.Seconds()
				s := newSim(sim{Capacity: tc.capacity, Base: tc.base, Rate: 2 * maxThroughput}, 1, Config{InitialLimit: initial})
				s.run(tc.warmup)
				s.reset()
				s.run(tc.warmup + tc.measure)
				st := s.stats
				c := float64(tc.capacity)
				t.Logf("limit mean %.1f (range %d..%d) for capacity %d; latency %v; throughput %.0f/s of %.0f/s; %d of %d shed",
					st.meanLimit(), st.minLimit, st.maxLimit, tc.capacity, st.meanLatency(), st.throughput(s.now), maxThroughput, st.rejected, st.offered)
				if m := st.meanLimit(); m < 0.7*c || m > 2*c {
					t.Errorf("mean limit %.1f, want within %.0f..%.0f", m, 0.7*c, 2*c)
				}
				if lat := st.meanLatency(); lat > 2*tc.base {
					t.Errorf("mean latency %v, want under 2 × %v", lat, tc.base)
				}
				if thr := st.throughput(s.now); thr < 0.85*maxThroughput {
					t.Errorf("throughput %.0f/s, want at least 85%% of %.0f/s", thr, maxThroughput)
				}
				if st.rejected < st.offered*4/10 {
					t.Errorf("%d of %d offered shed, want the excess (about half)", st.rejected, st.offered)
				}
			})
		}
	}
}

// When the upstream's capacity doubles the limit grows to the new capacity; when it
// collapses to a third, with requests timing out (dropped), it shrinks to it.
func TestFollowsCapacity(t *testing.T) {
	const base = 20 * time.Millisecond
	s := newSim(sim{Capacity: 30, Base: base, Rate: 4500, Timeout: 5 * base}, 2, Config{})
	phase := func(name string, capacity int, until time.Duration, settle time.Duration) {
		t.Helper()
		s.Capacity = capacity
		s.run(s.now + settle)
		s.reset()
		s.run(until)
		st := s.stats
		c := float64(capacity)
		t.Logf("%s: limit mean %.1f (range %d..%d) for capacity %d; latency %v; throughput %.0f/s of %.0f/s",
			name, st.meanLimit(), st.minLimit, st.maxLimit, capacity, st.meanLatency(), st.throughput(s.now), c/base.Seconds())
		if m := st.meanLimit(); m < max(4, 0.7*c) || m > 2*c {
			t.Errorf("%s: mean limit %.1f, want within %.0f..%.0f", name, m, max(4, 0.7*c), 2*c)
		}
		if lat := st.meanLatency(); lat > 2*base {
			t.Errorf("%s: mean latency %v, want under 2 × %v", name, lat, base)
		}
		if thr := st.throughput(s.now); thr < 0.85*c/base.Seconds() {
			t.Errorf("%s: throughput %.0f/s, want at least 85%% of %.0f/s", name, thr, c/base.Seconds())
		}
	}
	phase("capacity 30", 30, 10*time.Second, 8*time.Second)
	phase("doubled to 60", 60, 18*time.Second, 6*time.Second)
	phase("collapsed to 20", 20, 24*time.Second, 4*time.Second)
}

// The limit stays within MinLimit..MaxLimit whatever the upstream does, probes
// included.
func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		up       sim
		cfg      Config
		wantNear int // the limit should spend most of the time here
	}{
		{"ample capacity, max 60", sim{Capacity: 1000, Base: 20 * time.Millisecond, Rate: 4000}, Config{MaxLimit: 60, ProbeInterval: time.Second}, 60},
		// MinLimit is above capacity, so the probes measure the latency at MinLimit
		// (4 × the no-load latency) and take that for the baseline: the limit need
		// not stay at MinLimit, only never go below it.
		{"tiny capacity, min 8", sim{Capacity: 2, Base: 20 * time.Millisecond, Rate: 2000}, Config{MinLimit: 8, ProbeInterval: time.Second}, 0},
		{"everything fails, min 6", sim{Capacity: 1000, Base: 20 * time.Millisecond, Rate: 2000, DropRate: 1}, Config{MinLimit: 6}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []int
			cfg := tc.cfg
			cfg.OnLimitChange = func(n int) { seen = append(seen, n) }
			s := newSim(tc.up, 3, cfg)
			s.run(10 * time.Second)
			d := cfg.withDefaults()
			lo, hi := d.MaxLimit, d.MinLimit
			for _, n := range seen {
				lo, hi = min(lo, n), max(hi, n)
			}
			s.reset()
			s.run(15 * time.Second)
			t.Logf("limit %d..%d over %d changes; mean %.1f in the last 5s", lo, hi, len(seen), s.stats.meanLimit())
			if lo < d.MinLimit || hi > d.MaxLimit || s.stats.minLimit < d.MinLimit || s.stats.maxLimit > d.MaxLimit {
				t.Errorf("limit left [%d, %d]: changes spanned %d..%d, last 5s %d..%d", d.MinLimit, d.MaxLimit, lo, hi, s.stats.minLimit, s.stats.maxLimit)
			}
			if m := s.stats.meanLimit(); tc.wantNear > 0 && math.Abs(m-float64(tc.wantNear)) > 0.1*float64(tc.wantNear)+1 {
				t.Errorf("mean limit %.1f in the last 5s, want about %d", m, tc.wantNear)
			}
		})
	}
}

// Requests released as dropped shrink the limit; a background of a few failures
// does not ratchet it down.
func TestDropsShrink(t *testing.T) {
	s := newSim(sim{Capacity: 1000, Base: 20 * time.Millisecond, Rate: 4000}, 4, Config{})
	s.run(8 * time.Second)
	before := s.lim.Limit()
	if before < 120 {
		t.Fatalf("limit %d with ample capacity and ~80 in flight, want it to have grown past 120", before)
	}
	s.DropRate = 0.5
	s.run(11 * time.Second)
	during := s.lim.Limit()
	s.DropRate = 0.02
	s.run(21 * time.Second)
	after := s.lim.Limit()
	t.Logf("limit %d, after 3s of 50%% drops %d, after 10s more of 2%% drops %d", before, during, after)
	if during > before/4 {
		t.Errorf("limit %d after 3s of 50%% drops, want under a quarter of %d", during, before)
	}
	if after < 4*during {
		t.Errorf("limit %d after 10s of 2%% drops, want it to have grown back to at least 4 × %d", after, during)
	}
}

// Under sustained overload the no-load latency is measured again every ProbeInterval,
// which keeps the baseline from creeping up; without overload it is not.
func TestProbes(t *testing.T) {
	const base = 20 * time.Millisecond
	t.Run("overload", func(t *testing.T) {
		s := newSim(sim{Capacity: 20, Base: base, Rate: 2000}, 5, Config{ProbeInterval: 5 * time.Second})
		s.run(31 * time.Second)
		probes := s.lim.epoch.Load() / 2
		t.Logf("%d probes in 31s; baseline %v", probes, time.Duration(s.lim.long))
		if probes < 6 || probes > 7 {
			t.Errorf("%d probes in 31s of overload, want 7 (start, then every 5s), 6 at least", probes)
		}
		if long := time.Duration(s.lim.long); long < base || long > base*11/10 {
			t.Errorf("baseline %v, want within 10%% above %v", long, base)
		}
	})
	t.Run("overload after a long calm", func(t *testing.T) {
		s := newSim(sim{Capacity: 20, Base: base, Rate: 300}, 8, Config{ProbeInterval: 5 * time.Second})
		s.run(60 * time.Second)
		if probes := s.lim.epoch.Load() / 2; probes != 1 {
			t.Fatalf("%d probes in 60s of calm, want only the first", probes)
		}
		s.Rate = 2000
		s.run(71 * time.Second)
		if probes := s.lim.epoch.Load()/2 - 1; probes < 1 {
			t.Errorf("no probe in the first 11s of overload after a calm minute, want one within 2 × ProbeInterval")
		}
	})
	t.Run("no overload", func(t *testing.T) {
		s := newSim(sim{Capacity: 1000, Base: base, Rate: 1000}, 6, Config{ProbeInterval: time.Second})
		s.run(15 * time.Second)
		if probes := s.lim.epoch.Load() / 2; probes != 1 {
			t.Errorf("%d probes in 15s without overload, want only the first", probes)
		}
	})
	// The upstream becomes twice as slow for good: the latency gradient alone takes
	// that for overload and shrinks the limit below capacity; the next probe learns
	// the new latency and the limit recovers.
	t.Run("slower for good", func(t *testing.T) {
		s := newSim(sim{Capacity: 20, Base: base, Rate: 2000}, 7, Config{ProbeInterval: 10 * time.Second})
		s.run(11 * time.Second) // just after the probe at ~10s
		s.Base = 2 * base
		s.run(15 * time.Second)
		s.reset()
		s.run(19 * time.Second)
		before := s.stats
		s.run(25 * time.Second)
		s.reset()
		s.run(29 * time.Second)
		st := s.stats
		t.Logf("limit mean %.1f, throughput %.0f/s before the probe; limit mean %.1f after; throughput %.0f/s of %.0f/s, latency %v",
			before.meanLimit(), before.throughput(19*time.Second), st.meanLimit(), st.throughput(s.now), 20/(2*base).Seconds(), st.meanLatency())
		if before.meanLimit() > 19 {
			t.Errorf("mean limit %.1f before the probe, want the latency gradient to have shrunk it below capacity", before.meanLimit())
		}
		if m := st.meanLimit(); m < 14 || m > 40 {
			t.Errorf("mean limit %.1f after the probe, want within 14..40", m)
		}
		if thr := st.throughput(s.now); thr < 0.85*500 {
			t.Errorf("throughput %.0f/s, want at least 85%% of 500/s", thr)
		}
	})
}

// Concurrent Acquire and Release with the real clock (run under -race): the limit is
// never exceeded and the in-flight count returns to 0.
func TestConcurrent(t *testing.T) {
	l := New(Config{Window: time.Millisecond, ProbeInterval: 50 * time.Millisecond, MinLimit: 2, MaxLimit: 6})
	var admitted, refused, overLimit atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok, ok := l.Acquire()
				if !ok {
					refused.Add(1)
					runtime.Gosched()
					continue
				}
				admitted.Add(1)
				if tok.inflight > 6 {
					overLimit.Add(1)
				}
				runtime.Gosched() // hold the token while others run
				rtt := time.Duration(rng.IntN(int(time.Millisecond)))
				l.Release(tok, rtt, i%50 == 0)
			}
		})
	}
	wg.Go(func() {
		for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
			if n := l.Limit(); n < 2 || n > 6 {
				t.Errorf("Limit() = %d, outside [2, 6]", n)
			}
			time.Sleep(time.Millisecond)
		}
		close(stop)
	})
	wg.Wait()
	t.Logf("%d admitted, %d refused, limit %d", admitted.Load(), refused.Load(), l.Limit())
	if l.Inflight() != 0 {
		t.Fatalf("Inflight() = %d after all releases, want 0", l.Inflight())
	}
	if overLimit.Load() > 0 {
		t.Fatalf("%d requests admitted above MaxLimit", overLimit.Load())
	}
	if admitted.Load() < 1000 {
		t.Fatalf("only %d admitted", admitted.Load())
	}
}

func TestAcquireReleaseDoNotAllocate(t *testing.T) {
	l := New(Config{})
	if n := testing.AllocsPerRun(10_000, func() {
		tok, _ := l.Acquire()
		l.Release(tok, time.Millisecond, false)
	}); n != 0 {
		t.Fatalf("Acquire+Release allocate %v times", n)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		l := New(Config{})
		b.ReportAllocs()
		for b.Loop() {
			tok, _ := l.Acquire()
			l.Release(tok, time.Millisecond, false)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := New(Config{MinLimit: 1000, MaxLimit: 1000, InitialLimit: 1000})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tok, _ := l.Acquire()
				l.Release(tok, time.Millisecond, false)
			}
		})
	})
}

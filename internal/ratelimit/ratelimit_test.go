package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/fakeclock"
)

type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New() }

func newLimiter(tb testing.TB, c *clock, edit func(*Config)) *Limiter {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Rate = 1000
	if c != nil {
		cfg.Now = c.Now
	}
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"defaults with a rate", func(c *Config) { c.Rate = 10 }, true},
		{"zero fields take defaults", func(c *Config) { *c = Config{Rate: 0.5} }, true},
		{"no rate", func(c *Config) {}, false},
		{"negative rate", func(c *Config) { c.Rate = -1 }, false},
		{"NaN rate", func(c *Config) { c.Rate = math.NaN() }, false},
		{"infinite rate", func(c *Config) { c.Rate = math.Inf(1) }, false},
		{"rate above MaxRate", func(c *Config) { c.Rate = 2e9 }, false},
		{"rate above MaxRate, halved by the share", func(c *Config) { c.Rate, c.Share = 2e9, 0.5 }, true},
		{"negative burst", func(c *Config) { c.Rate, c.Burst = 10, -1 }, false},
		{"share above 1", func(c *Config) { c.Rate, c.Share = 10, 1.5 }, false},
		{"negative share", func(c *Config) { c.Rate, c.Share = 10, -0.5 }, false},
		{"NaN share", func(c *Config) { c.Rate, c.Share = 10, math.NaN() }, false},
		{"negative max keys", func(c *Config) { c.Rate, c.MaxKeys = 10, -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New with an invalid config did not panic")
		}
	}()
	New(Config{})
}

// A fresh key may send Burst requests at once, then is denied until a token refills;
// the header values count down and the times are exact.
func TestBurstAndHeaders(t *testing.T) {
	c := newClock()
	l := newLimiter(t, c, func(cfg *Config) { cfg.Rate, cfg.Burst = 10, 5 }) // a token per 100ms
	for i := range 5 {
		ok, limit, remaining, reset, retry := l.Allow("k")
		if !ok || limit != 5 || remaining != 4-i || reset != time.Duration(i+1)*100*time.Millisecond || retry != 0 {
			t.Fatalf("request %d: Allow = %v, %d, %d, %v, %v; want true, 5, %d, %v, 0",
				i, ok, limit, remaining, reset, retry, 4-i, time.Duration(i+1)*100*time.Millisecond)
		}
	}
	ok, limit, remaining, reset, retry := l.Allow("k")
	if ok || limit != 5 || remaining != 0 || reset != 500*time.Millisecond || retry != 100*time.Millisecond {
		t.Fatalf("6th request: Allow = %v, %d, %d, %v, %v; want false, 5, 0, 500ms, 100ms", ok, limit, remaining, reset, retry)
	}
	// 30ms later the retry time has shrunk accordingly, and a denial costs nothing.
	c.Advance(30 * time.Millisecond)
	if ok, _, _, reset, retry := l.Allow("k"); ok || reset != 470*time.Millisecond || retry != 70*time.Millisecond {
		t.Fatalf("after 30ms: Allow = %v, reset %v, retry %v; want false, 470ms, 70ms", ok, reset, retry)
	}
	// Just before the token: still denied; at it: admitted, with nothing left.
	c.Advance(70*time.Millisecond - 1)
	if ok, _, _, _, retry := l.Allow("k"); ok || retry != 1 {
		t.Fatalf("1ns early: Allow = %v, retry %v; want false, 1ns", ok, retry)
	}
	c.Advance(1)
	if ok, _, remaining, reset, _ := l.Allow("k"); !ok || remaining != 0 || reset != 500*time.Millisecond {
		t.Fatalf("on time: Allow = %v, remaining %d, reset %v; want true, 0, 500ms", ok, remaining, reset)
	}
	// Other keys have their own buckets.
	if ok, _, remaining, _, _ := l.Allow("other"); !ok || remaining != 4 {
		t.Fatalf("other key: Allow = %v, remaining %d; want true, 4", ok, remaining)
	}
}

// A drained bucket refills at Rate and never beyond Burst.
func TestRefill(t *testing.T) {
	c := newClock()
	l := newLimiter(t, c, func(cfg *Config) { cfg.Rate, cfg.Burst = 100, 20 })
	drain := func() int {
		n := 0
		for {
			ok, _, _, _, _ := l.Allow("k")
			if !ok {
				return n
			}
			n++
		}
	}
	if n := drain(); n != 20 {
		t.Fatalf("fresh bucket admitted %d, want the burst 20", n)
	}
	c.Advance(75 * time.Millisecond) // 7.5 tokens
	if n := drain(); n != 7 {
		t.Fatalf("after 75ms admitted %d, want 7", n)
	}
	c.Advance(5 * time.Millisecond) // the half token left over, plus another half
	if n := drain(); n != 1 {
		t.Fatalf("after 5 more ms admitted %d, want 1 (the fraction carries over)", n)
	}
	c.Advance(time.Hour)
	if n := drain(); n != 20 {
		t.Fatalf("after an hour admitted %d, want the burst 20 (no more)", n)
	}
}

// The default burst is one second's worth, at least 1; the share scales it.
func TestDefaultBurst(t *testing.T) {
	for _, tc := range []struct {
		rate, share float64
		burst       int
		want        int
	}{
		{1000, 1, 0, 1000},
		{2.5, 1, 0, 3},
		{0.1, 1, 0, 1},
		{1000, 0.5, 0, 500},
		{30, 0.1, 29, 2},
		{30, 0.1, 30, 3},
		{10, 0.01, 0, 1},
	} {
		l := newLimiter(t, newClock(), func(cfg *Config) { cfg.Rate, cfg.Share, cfg.Burst = tc.rate, tc.share, tc.burst })
		if _, limit, _, _, _ := l.Allow("k"); limit != tc.want {
			t.Errorf("rate %v share %v burst %d: limit %d, want %d", tc.rate, tc.share, tc.burst, limit, tc.want)
		}
	}
}

// offer sends requests for key at the given rate for d, from a clock stepped in
// increments drawn around 1/rps (rng nil: exact steps), and returns how many were
// admitted.
func offer(l *Limiter, c *clock, key string, rps float64, d time.Duration, rng *rand.Rand) int {
	step := time.Duration(float64(time.Second) / rps)
	admitted := 0
	for elapsed := time.Duration(0); elapsed < d; {
		if ok, _, _, _, _ := l.Allow(key); ok {
			admitted++
		}
		s := step
		if rng != nil {
			s = time.Duration(rng.ExpFloat64() * float64(step))
		}
		c.Advance(s)
		elapsed += s
	}
	return admitted
}

// Over 10s at 1,000/s with 3,000/s offered, exactly 10,000 + burst pass (the spec
// allows ±5%), with regular and with Poisson arrivals.
func TestAccuracyInjectedClock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		burst int
		rng   *rand.Rand
	}{
		{"regular arrivals, default burst", 0, nil},
		{"regular arrivals, burst 50", 50, nil},
		{"poisson arrivals seed 1", 50, rand.New(rand.NewPCG(1, 1))},
		{"poisson arrivals seed 2, default burst", 0, rand.New(rand.NewPCG(2, 2))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(t, c, func(cfg *Config) { cfg.Burst = tc.burst })
			_, burst, _, _, _ := l.Allow("probe")
			got := offer(l, c, "k", 3000, 10*time.Second, tc.rng)
			want := 10_000 + burst
			t.Logf("admitted %d of ~30,000 offered, want %d (%+.3f%%)", got, want, 100*float64(got-want)/10_000)
			// Poisson gaps can leave the bucket full for a moment (tokens lost to the cap).
			lo := want - 1
			if tc.rng != nil {
				lo = want - 10_000/100
			}
			if got < lo || got > want+1 {
				t.Fatalf("admitted %d, want %d..%d", got, lo, want+1)
			}
		})
	}
}

// With the real clock and eight goroutines on two keys for ~2s, each key is admitted
// within ±5% of Rate × elapsed after its burst.
func TestAccuracyRealClock(t *testing.T) {
	const rate, burst = 1000.0, 100 // 100ms of slack for a descheduled goroutine
	l := New(Config{Rate: rate, Burst: burst})
	keys := []string{"a", "b"}
	var admitted [2]atomic.Int64
	start := time.Now()
	deadline := start.Add(2 * time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			k := g % len(keys)
			for time.Now().Before(deadline) {
				for range 20 { // ~20 requests per ~1ms sleep: far more than the rate
					if ok, _, _, _, _ := l.Allow(keys[k]); ok {
						admitted[k].Add(1)
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	want := rate * elapsed.Seconds()
	for k := range keys {
		got := float64(admitted[k].Load() - burst)
		t.Logf("key %s: %.0f admitted beyond the burst in %v, rate×elapsed %.0f (%+.2f%%)", keys[k], got, elapsed, want, 100*(got-want)/want)
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("key %s: %.0f admitted beyond the burst, want %.0f ±5%%", keys[k], got, want)
		}
	}
}

// Halving the share halves the admitted rate (and the burst); existing buckets keep
// their tokens rather than being refilled or emptied.
func TestSetShare(t *testing.T) {
	c := newClock()
	l := newLimiter(t, c, func(cfg *Config) { cfg.Burst = 100 })
	if got := offer(l, c, "k", 3000, 5*time.Second, nil); got < 5100-1 || got > 5100+1 {
		t.Fatalf("share 1: admitted %d in 5s, want 5,100", got)
	}
	l.SetShare(0.5)
	if l.Share() != 0.5 {
		t.Fatalf("Share() = %v, want 0.5", l.Share())
	}
	// The bucket is empty after the flood: it stays empty, no fresh burst.
	if got := offer(l, c, "k", 3000, 5*time.Second, nil); got < 2500-1 || got > 2500+1 {
		t.Fatalf("share 0.5: admitted %d in 5s, want 2,500", got)
	}
	// A new key gets the halved burst.
	if _, limit, remaining, _, _ := l.Allow("new"); limit != 50 || remaining != 49 {
		t.Fatalf("new key at share 0.5: limit %d remaining %d, want 50, 49", limit, remaining)
	}
	// A partly used bucket keeps its token count across a change of share, capped at
	// the new burst.
	c.Advance(time.Hour)
	l.SetShare(1)
	for range 30 {
		l.Allow("p") // 70 of 100 tokens left
	}
	l.SetShare(0.5) // capped at 50
	if _, _, remaining, _, _ := l.Allow("p"); remaining != 49 {
		t.Fatalf("after shrinking the share: remaining %d, want 49 (50 kept, capped at the new burst, minus 1)", remaining)
	}
	for range 20 {
		l.Allow("p") // 29 left
	}
	l.SetShare(1)
	if _, _, remaining, _, _ := l.Allow("p"); remaining != 28 {
		t.Fatalf("after growing the share: remaining %d, want 28 (29 kept, not refilled, minus 1)", remaining)
	}
	for _, bad := range []float64{0, -1, 1.5, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetShare(%v) did not panic", bad)
				}
			}()
			l.SetShare(bad)
		}()
	}
}

// Spraying 200,000 keys keeps at most MaxKeys buckets, and a heavy client's drained
// bucket survives the spray (the sprayed keys' buckets are evicted first).
func TestMaxKeys(t *testing.T) {
	c := newClock()
	const maxKeys = 1000
	l := newLimiter(t, c, func(cfg *Config) { cfg.Rate, cfg.Burst, cfg.MaxKeys = 100, 100, maxKeys })
	heavy := "heavy"
	for {
		if ok, _, _, _, _ := l.Allow(heavy); !ok {
			break
		}
	}
	var b []byte
	for i := range 200_000 {
		b = strconv.AppendInt(b[:0], int64(i), 10)
		l.AllowBytes(b)
		if i%1000 == 0 {
			c.Advance(time.Microsecond) // the heavy bucket refills by 0.01 token per 1,000 keys
			if ok, _, _, _, _ := l.Allow(heavy); ok {
				t.Fatalf("after %d sprayed keys the heavy client was admitted: its drained bucket was evicted", i)
			}
		}
	}
	if n := l.Len(); n > maxKeys {
		t.Fatalf("Len() = %d after spraying, want at most %d", n, maxKeys)
	}
	// Once the sprayed buckets are full again, new keys evict them and not the
	// heavy client.
	c.Advance(10 * time.Millisecond) // sprayed buckets refill, the heavy one does not
	for i := range 10_000 {
		l.Allow("later" + strconv.Itoa(i))
		c.Advance(time.Nanosecond)
	}
	// 11ms after it was drained the heavy client has 1.1 tokens, not a fresh burst.
	if ok, _, remaining, _, _ := l.Allow(heavy); !ok || remaining != 0 {
		t.Fatalf("heavy client after the second spray: Allow = %v, remaining %d; want true, 0 (its bucket kept)", ok, remaining)
	}
	if n := l.Len(); n > maxKeys {
		t.Fatalf("Len() = %d, want at most %d", n, maxKeys)
	}

	// Tiny bounds work too.
	for _, mk := range []int{1, 3, 63, 65} {
		l := newLimiter(t, c, func(cfg *Config) { cfg.MaxKeys = mk })
		for i := range 500 {
			l.Allow(strconv.Itoa(i))
		}
		if n := l.Len(); n > mk || n == 0 {
			t.Errorf("MaxKeys %d: Len() = %d", mk, n)
		}
	}
}

// AllowBytes copies a new key: reusing the buffer afterwards must not change it.
func TestAllowBytesCopiesKey(t *testing.T) {
	l := newLimiter(t, newClock(), func(cfg *Config) { cfg.Rate, cfg.Burst = 1, 1 })
	buf := []byte("alice")
	if ok, _, _, _, _ := l.AllowBytes(buf); !ok {
		t.Fatal("first request denied")
	}
	copy(buf, "bobby")
	if ok, _, _, _, _ := l.Allow("alice"); ok {
		t.Fatal("alice admitted twice: the stored key aliased the caller's buffer")
	}
	if ok, _, _, _, _ := l.Allow("bobby"); !ok {
		t.Fatal("bobby denied")
	}
}

// Concurrent callers on shared and distinct keys, with share changes and eviction,
// never over-admit a key (run under -race).
func TestConcurrent(t *testing.T) {
	c := newClock()
	l := newLimiter(t, c, func(cfg *Config) { cfg.Rate, cfg.Burst, cfg.MaxKeys = 100, 10, 200 })
	var shared atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if ok, _, _, _, _ := l.Allow("shared"); ok {
					shared.Add(1)
				}
				l.Allow(fmt.Sprintf("g%d-%d", g, i%300))
				if i%100 == 0 && g == 0 {
					l.SetShare([]float64{1, 0.5}[i/100%2])
				}
			}
		})
	}
	wg.Wait()
	// The clock never moved: the shared key got its burst and nothing more (the
	// share can only shrink it; it refills no tokens).
	if n := shared.Load(); n < 1 || n > 10 {
		t.Fatalf("shared key admitted %d times without the clock moving, want 1..10", n)
	}
	if n := l.Len(); n > 200 {
		t.Fatalf("Len() = %d, want at most 200", n)
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	l := newLimiter(t, newClock(), nil)
	key, bkey := "203.0.113.7", []byte("203.0.113.8")
	l.Allow(key)
	l.AllowBytes(bkey)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key) }); n != 0 {
		t.Errorf("Allow allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.AllowBytes(bkey) }); n != 0 {
		t.Errorf("AllowBytes allocates %v times per call", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	b.Run("same key", func(b *testing.B) {
		l := New(Config{Rate: 1e6})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow(keys[0])
			}
		})
	})
	b.Run("1024 keys", func(b *testing.B) {
		l := New(Config{Rate: 1e6})
		for _, k := range keys {
			l.Allow(k)
		}
		var seq atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(97))
			for pb.Next() {
				l.Allow(keys[i&1023])
				i++
			}
		})
	})
	b.Run("1024 keys bytes", func(b *testing.B) {
		l := New(Config{Rate: 1e6})
		bkeys := make([][]byte, len(keys))
		for i, k := range keys {
			bkeys[i] = []byte(k)
			l.Allow(k)
		}
		var seq atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(97))
			for pb.Next() {
				l.AllowBytes(bkeys[i&1023])
				i++
			}
		})
	})
}

// TestVictim checks the eviction choice within a shard: a full bucket first, else the
// one closest to full, and among equally drained buckets the least used (without the
// last rule a concurrently hammered key lost its drained bucket to a tie and got a
// fresh burst).
func TestVictim(t *testing.T) {
	const now = 1000
	type sl struct {
		tat  int64
		uses uint32
	}
	tests := []struct {
		name  string
		slots []sl
		want  int
	}{
		{"full bucket first", []sl{{1100, 1}, {now, 500}, {1050, 1}}, 1},
		{"closest to full", []sl{{1100, 1}, {1050, 900}, {1100, 1}}, 1},
		{"tie: least used", []sl{{1100, 900}, {1100, 2}, {1100, 5}}, 1},
		{"tie: first of the least used", []sl{{1100, 900}, {1100, 3}, {1100, 3}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s shard
			for _, x := range tt.slots {
				s.slots = append(s.slots, slot{tat: x.tat, uses: x.uses})
			}
			if got := s.victim(now); got != tt.want {
				t.Fatalf("victim = %d, want %d", got, tt.want)
			}
			for i, x := range tt.slots {
				if i < tt.want && s.slots[i].uses != x.uses/2 {
					t.Fatalf("slot %d passed by the hand kept %d uses, want %d", i, s.slots[i].uses, x.uses/2)
				}
			}
		})
	}
}

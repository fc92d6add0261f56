package budget

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/fakeclock"
)

type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New() }

func newBudget(c *clock, edit func(*Config)) *Budget {
	cfg := DefaultConfig()
	cfg.Now = c.Now
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg)
}

// Every request fails and wants a retry: once the window is full, the admitted
// retries are Ratio of the requests plus MinPerSecond.
func TestSteadyState(t *testing.T) {
	for _, tc := range []struct {
		name           string
		ratio, min     float64
		rps            int
		wantLo, wantHi float64 // admitted retries per second in the steady state
	}{
		{"defaults at 1000/s", 0.2, 10, 1000, 190, 220},
		{"no floor", 0.2, 0, 1000, 180, 210},
		{"floor only", 0, 10, 1000, 9, 11},
		{"quiet service", 0.2, 10, 10, 10, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			b := newBudget(c, func(cfg *Config) { cfg.Ratio, cfg.MinPerSecond = tc.ratio, tc.min })
			step := time.Second / time.Duration(tc.rps)
			admitted := 0
			const warmup, measure = 20, 30 // seconds
			for i := range (warmup + measure) * tc.rps {
				c.Advance(step)
				b.Request()
				if b.TryRetry() && i >= warmup*tc.rps {
					admitted++
				}
			}
			perSec := float64(admitted) / measure
			t.Logf("%.1f retries/s", perSec)
			if perSec < tc.wantLo || perSec > tc.wantHi {
				t.Errorf("%.1f retries/s admitted, want %.0f..%.0f", perSec, tc.wantLo, tc.wantHi)
			}
		})
	}
}

func TestZeroRequestsAllowFloor(t *testing.T) {
	b := newBudget(newClock(), nil)
	n := 0
	for b.TryRetry() {
		n++
		if n > 1000 {
			t.Fatal("no limit without requests")
		}
	}
	if n != 100 { // 10/s over 10s
		t.Errorf("%d retries without requests, want 100", n)
	}
}

func TestWindowSlides(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  time.Duration // between 1000 requests and the retries
		want int
	}{
		{"within the window", 5 * time.Second, 300},
		{"requests slid out", 11 * time.Second, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			b := newBudget(c, nil)
			for range 1000 {
				b.Request()
			}
			c.Advance(tc.gap)
			n := 0
			for b.TryRetry() && n < 10000 {
				n++
			}
			if n != tc.want {
				t.Errorf("%d retries admitted, want %d", n, tc.want)
			}
		})
	}
}

// Spent retries slide out of the window too, and the budget refills.
func TestRetriesSlideOut(t *testing.T) {
	c := newClock()
	b := newBudget(c, nil)
	for b.TryRetry() {
	}
	c.Advance(10 * time.Second)
	if !b.TryRetry() {
		t.Error("budget did not refill after the window passed")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", DefaultConfig(), true},
		{"zero", Config{}, true},
		{"negative ratio", Config{Ratio: -0.1}, false},
		{"negative floor", Config{MinPerSecond: -1}, false},
		{"negative window", Config{Window: -time.Second}, false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v does not wrap ErrInvalidConfig", tc.name, err)
		}
	}
}

// Concurrent retries never overdraw the budget (run with -race).
func TestConcurrent(t *testing.T) {
	c := newClock()
	b := newBudget(c, nil)
	for range 1000 {
		b.Request()
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.Request()
				if b.TryRetry() {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 9000 requests in one second: at most 0.2 × 9000 + 100.
	if n := admitted.Load(); n > 1900 {
		t.Errorf("%d retries admitted, want at most 1900", n)
	}
}

func TestRequestDoesNotAllocate(t *testing.T) {
	b := New(DefaultConfig())
	if n := testing.AllocsPerRun(1000, func() { b.Request(); b.TryRetry() }); n != 0 {
		t.Errorf("%v allocs per Request+TryRetry", n)
	}
}

func BenchmarkRequest(b *testing.B) {
	bg := New(DefaultConfig())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bg.Request()
		}
	})
}

func BenchmarkTryRetry(b *testing.B) {
	bg := New(DefaultConfig())
	b.ReportAllocs()
	for b.Loop() {
		bg.Request()
		bg.TryRetry()
	}
}

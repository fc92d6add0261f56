package outlier

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/fakeclock"
)

type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New() }

// setup returns a detector with the default config on a fake clock, tracking n hosts.
func setup(t testing.TB, n int) (*Detector, []*Host, *clock) {
	t.Helper()
	c := newClock()
	cfg := DefaultConfig()
	cfg.Now = c.Now
	d := New(cfg)
	hosts := make([]*Host, n)
	for i := range hosts {
		hosts[i] = new(Host)
		d.Track(hosts[i])
	}
	return d, hosts, c
}

// failN reports n failures of h and whether the last one ejected it.
func failN(d *Detector, h *Host, n int) (ejected bool) {
	for range n {
		ejected = d.Failure(h)
	}
	return ejected
}

func TestEjectsAtConsecutiveFailures(t *testing.T) {
	for _, tc := range []struct {
		outcomes string // F failure, S success
		want     bool   // ejected after the last
	}{
		{"FFFFF", true},
		{"FFFF", false},
		{"FFFFSFFFF", false},
		{"FFFFSFFFFF", true},
		{"SSSSSSSSSS", false},
		{"FSFSFSFSFS", false},
	} {
		t.Run(tc.outcomes, func(t *testing.T) {
			d, hosts, _ := setup(t, 4)
			h := hosts[0]
			for i, o := range tc.outcomes {
				var ej bool
				if o == 'F' {
					ej = d.Failure(h)
				} else {
					d.Success(h)
				}
				if last := i == len(tc.outcomes)-1; ej && !last {
					t.Fatalf("ejected at outcome %d", i+1)
				}
			}
			if got := d.Ejected(h); got != tc.want {
				t.Errorf("Ejected() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEjectionEnds(t *testing.T) {
	d, hosts, c := setup(t, 4)
	h := hosts[0]
	start := c.Now()
	if !failN(d, h, 5) {
		t.Fatal("not ejected after 5 failures")
	}
	if got, want := h.EjectedUntil(), start.Add(30*time.Second); !got.Equal(want) {
		t.Errorf("EjectedUntil() = %v, want %v", got, want)
	}
	if failN(d, h, 10) || h.Ejections() != 1 {
		t.Fatal("failures while ejected ejected it again")
	}
	c.Advance(30*time.Second - 1)
	if !d.Ejected(h) || d.EjectedCount() != 1 {
		t.Fatal("not ejected 1ns before the end")
	}
	c.Advance(1)
	if d.Ejected(h) || d.EjectedCount() != 0 {
		t.Fatal("still ejected at the end")
	}
	if !h.EjectedUntil().IsZero() {
		t.Errorf("EjectedUntil() = %v after the end, want zero", h.EjectedUntil())
	}
	// Back in rotation with a fresh count: 4 failures are not enough.
	if failN(d, h, 4) {
		t.Fatal("ejected after 4 failures back in rotation")
	}
	if !failN(d, h, 1) {
		t.Fatal("not ejected after 5 failures back in rotation")
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	var got []time.Duration
	c := newClock()
	cfg := DefaultConfig()
	cfg.Now = c.Now
	cfg.OnEject = func(_ *Host, d time.Duration) { got = append(got, d) }
	d := New(cfg)
	hosts := []*Host{{}, {}, {}, {}}
	for _, h := range hosts {
		d.Track(h)
	}
	h := hosts[0]
	s := time.Second
	want := []time.Duration{30 * s, 60 * s, 120 * s, 240 * s, 300 * s, 300 * s, 300 * s}
	for i := range want {
		if !failN(d, h, 5) {
			t.Fatalf("ejection %d did not happen", i+1)
		}
		c.Advance(want[i]) // back exactly when the ejection ends
		if d.Ejected(h) {
			t.Fatalf("ejection %d lasted longer than %v", i+1, want[i])
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ejections %v, want %v", got, want)
	}
	if h.Ejections() != len(want) {
		t.Errorf("Ejections() = %d, want %d", h.Ejections(), len(want))
	}
}

func TestMultiplierDecays(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		rest time.Duration // in rotation after three ejections (30s, 60s, 120s)
		want time.Duration // the fourth
	}{
		{0, 240 * s},
		{29 * s, 240 * s},
		{30 * s, 120 * s},
		{60 * s, 60 * s},
		{90 * s, 30 * s},
		{10 * time.Minute, 30 * s},
	} {
		t.Run(tc.rest.String(), func(t *testing.T) {
			d, hosts, c := setup(t, 4)
			h := hosts[0]
			for _, l := range []time.Duration{30 * s, 60 * s, 120 * s} {
				failN(d, h, 5)
				c.Advance(l)
			}
			c.Advance(tc.rest)
			start := c.Now()
			if !failN(d, h, 5) {
				t.Fatal("not ejected")
			}
			if got := h.EjectedUntil().Sub(start); got != tc.want {
				t.Errorf("ejected for %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		hosts, percent, want int
	}{
		{4, 50, 2},
		{1, 50, 0},
		{3, 50, 1},
		{5, 50, 2},
		{4, 100, 4},
		{10, 10, 1},
		{9, 10, 0},
	} {
		t.Run(fmt.Sprintf("%d hosts at %d%%", tc.hosts, tc.percent), func(t *testing.T) {
			c := newClock()
			cfg := DefaultConfig()
			cfg.Now = c.Now
			cfg.MaxEjectionPercent = tc.percent
			d := New(cfg)
			ejected := 0
			hosts := make([]*Host, tc.hosts)
			for i := range hosts {
				hosts[i] = new(Host)
				d.Track(hosts[i])
			}
			for _, h := range hosts {
				failN(d, h, 20)
				if d.Ejected(h) {
					ejected++
				}
			}
			if ejected != tc.want || d.EjectedCount() != tc.want {
				t.Errorf("%d ejections (EjectedCount %d), want %d", ejected, d.EjectedCount(), tc.want)
			}
			// Once an ejection ends, the next failure of a held-back host ejects it.
			if tc.want > 0 && tc.want < tc.hosts {
				c.Advance(30 * time.Second)
				if !d.Failure(hosts[tc.hosts-1]) {
					t.Error("a held-back host was not ejected once room was free")
				}
			}
		})
	}
}

func TestTrackUntrack(t *testing.T) {
	d, hosts, _ := setup(t, 4)
	stranger := new(Host)
	if failN(d, stranger, 10) {
		t.Error("an untracked host was ejected")
	}
	failN(d, hosts[0], 5)
	failN(d, hosts[1], 5)
	if n := d.EjectedCount(); n != 2 {
		t.Fatalf("EjectedCount() = %d, want 2", n)
	}
	d.Untrack(hosts[0])
	if n := d.EjectedCount(); n != 1 {
		t.Errorf("EjectedCount() = %d after untracking an ejected host, want 1", n)
	}
	// 3 tracked, 1 ejected: floor(1.5) = 1 leaves no room.
	if failN(d, hosts[2], 5) {
		t.Error("ejected beyond 50% of 3 hosts")
	}
	d.Track(new(Host)) // 4 tracked: room for a second
	if !d.Failure(hosts[2]) {
		t.Error("not ejected with room for it")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"zero", func(c *Config) { *c = Config{} }, true},
		{"negative failures", func(c *Config) { c.ConsecutiveFailures = -1 }, false},
		{"negative base", func(c *Config) { c.BaseEjection = -1 }, false},
		{"max below base", func(c *Config) { c.MaxEjection = time.Second }, false},
		{"percent above 100", func(c *Config) { c.MaxEjectionPercent = 101 }, false},
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

// Goroutines report outcomes for shared hosts while the clock moves; the max-percent
// rule holds throughout (run with -race).
func TestConcurrent(t *testing.T) {
	d, hosts, c := setup(t, 6)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				h := hosts[rand.IntN(len(hosts))]
				switch {
				case g == 0 && i%100 == 0:
					c.Advance(5 * time.Second)
					if n := d.EjectedCount(); n > 3 {
						t.Errorf("%d of 6 hosts ejected", n)
					}
				case d.Ejected(h):
				case rand.IntN(4) == 0:
					d.Success(h)
				default:
					d.Failure(h)
				}
			}
		})
	}
	wg.Wait()
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	d, hosts, _ := setup(t, 2)
	h := hosts[0]
	if n := testing.AllocsPerRun(1000, func() { d.Failure(h); d.Success(h); d.Ejected(h) }); n != 0 {
		t.Errorf("%v allocs per Failure+Success+Ejected", n)
	}
}

func BenchmarkSuccess(b *testing.B) {
	d, hosts, _ := setup(b, 4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Success(hosts[0])
		}
	})
}

func BenchmarkEjected(b *testing.B) {
	d := New(DefaultConfig()) // the real clock: its cost is part of the check
	hosts := []*Host{{}, {}, {}, {}}
	for _, h := range hosts {
		d.Track(h)
	}
	failN(d, hosts[1], 5)
	for _, tc := range []struct {
		name string
		h    *Host
	}{{"in rotation", hosts[0]}, {"ejected", hosts[1]}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d.Ejected(tc.h)
				}
			})
		})
	}
}

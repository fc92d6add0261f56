package benchkv

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestStallTracker(t *testing.T) {
	const r = StallResolution
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name             string
		marks            []time.Duration // successes, from the start
		horizon, elapsed time.Duration
		length, at       time.Duration
	}{
		// Successes in the middle of their buckets are placed exactly.
		{name: "between successes", marks: []time.Duration{ms(0.05), ms(1.05), ms(5.05), ms(5.95)},
			horizon: ms(6), elapsed: ms(6), length: ms(4), at: ms(1.05)},
		{name: "at the start", marks: []time.Duration{ms(3.05), ms(3.15), ms(3.25)},
			horizon: ms(4), elapsed: ms(4), length: ms(3.05), at: 0},
		{name: "until the end", marks: []time.Duration{ms(0.05), ms(0.15)},
			horizon: ms(2), elapsed: ms(2.5), length: ms(2.35), at: ms(0.15)},
		{name: "after the horizon does not count", marks: []time.Duration{ms(0.05), ms(0.55), ms(1.05)},
			horizon: ms(1), elapsed: ms(9), length: ms(0.5), at: ms(0.05)},
		{name: "ends after the horizon", marks: []time.Duration{ms(0.05), ms(3.05)},
			horizon: ms(1), elapsed: ms(4), length: ms(3), at: ms(0.05)},
		{name: "no success", horizon: ms(2), elapsed: ms(2.5), length: ms(2.5), at: 0},
		{name: "one bucket without a success", marks: []time.Duration{ms(0.05), ms(0.25)},
			horizon: ms(0.3), elapsed: ms(0.3), length: 2 * r, at: ms(0.05)},
		{name: "nothing measured", horizon: ms(1), elapsed: 0, length: 0, at: 0},
		{name: "before the start is ignored", marks: []time.Duration{-ms(0.05), ms(0.55)},
			horizon: ms(1), elapsed: ms(0.6), length: ms(0.55), at: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s := newStallTracker(start, tt.elapsed+time.Second)
			for _, m := range tt.marks {
				s.mark(start.Add(m))
			}
			length, at := s.longest(tt.horizon, tt.elapsed)
			if length != tt.length || at != tt.at {
				t.Errorf("longest = %v at %v, want %v at %v", length, at, tt.length, tt.at)
			}
		})
	}

	t.Run("every bucket marked", func(t *testing.T) {
		start := time.Now()
		s := newStallTracker(start, time.Second)
		for i := range 100 {
			s.mark(start.Add(time.Duration(i)*r + r/3))
		}
		if length, at := s.longest(100*r, 100*r); length != 0 || at != 0 {
			t.Errorf("longest = %v at %v, want none", length, at)
		}
	})
	t.Run("long runs get wider buckets", func(t *testing.T) {
		s := newStallTracker(time.Now(), 24*time.Hour)
		if s.resolution <= StallResolution || s.buckets > maxStallBuckets || time.Duration(s.buckets)*s.resolution < 24*time.Hour {
			t.Errorf("resolution %v, %d buckets", s.resolution, s.buckets)
		}
		s.mark(s.start.Add(25 * time.Hour)) // beyond the span: ignored, not a panic
	})
}

// TestRunLongestStall pauses a fake store in the middle of a run, the way a leader
// failover does: once with requests that hang until it is over, once with requests that
// fail fast meanwhile.
func TestRunLongestStall(t *testing.T) {
	const pauseAt, pause = 100 * time.Millisecond, 150 * time.Millisecond
	for _, mode := range []string{"hang", "fail"} {
		t.Run(mode, func(t *testing.T) {
			d := newMemDriver()
			var once sync.Once
			var from, to time.Time
			d.onPut = func() {
				once.Do(func() { from = time.Now().Add(pauseAt); to = from.Add(pause) })
				now := time.Now()
				if now.Before(from) || !now.Before(to) {
					return
				}
				if mode == "hang" {
					time.Sleep(time.Until(to))
				} else {
					// A store that answers errors takes a moment too; one that fails in a
					// busy loop would starve the workers whose successes are timed.
					time.Sleep(time.Millisecond)
					panic(errPaused) // recovered by failingDriver
				}
			}
			c := testConfig(WorkloadPut)
			c.Duration = 400 * time.Millisecond
			start := time.Now()
			r, err := Run(context.Background(), c, failingDriver{d}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if (mode == "fail") != (r.Errors > 0) {
				t.Errorf("%d errors", r.Errors)
			}
			// The stall lasts from the last success before the pause to the first after
			// it: the pause, give or take the delay of the Go scheduler in running the
			// worker that timestamps a success (4 busy workers share the test's CPUs).
			if r.LongestStall < pause-10*time.Millisecond || r.LongestStall > pause+60*time.Millisecond {
				t.Errorf("longest stall %v, want about %v", r.LongestStall, pause)
			}
			// Measuring starts after Run was called, and the pause is placed relative to
			// the first put, so it begins at most a few ms before pauseAt.
			wantAt := from.Sub(start)
			if r.LongestStallAt < wantAt-20*time.Millisecond || r.LongestStallAt > wantAt+10*time.Millisecond {
				t.Errorf("stall at %v, want about %v", r.LongestStallAt, wantAt)
			}
			if r.StallResolution != StallResolution {
				t.Errorf("resolution %v", r.StallResolution)
			}
		})
	}
}

var errPaused = errors.New("paused")

// failingDriver turns a panic(errPaused) in memDriver's onPut hook into an error of Put.
type failingDriver struct{ *memDriver }

func (d failingDriver) Put(ctx context.Context, key string, value []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p != errPaused {
				panic(p)
			}
			err = errPaused
		}
	}()
	return d.memDriver.Put(ctx, key, value)
}

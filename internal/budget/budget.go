// Package budget is a retry budget in Linkerd's style: retries may add at most a fixed
// share of the original requests (plus a small floor per second, so that a quiet
// service can still retry), counted over a sliding window. Unlike a per-request retry
// limit, a budget bounds the extra load retries put on an upstream that is already
// failing: when every request fails, traffic grows by Ratio, not by the retry count.
package budget

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("budget: invalid config")

// Config tunes a Budget. Ratio and MinPerSecond are used as given (0 is meaningful:
// no share, no floor), so start from [DefaultConfig]; a zero Window takes its default.
type Config struct {
	// Ratio is the largest share of the original requests that retries may add,
	// e.g. 0.2 = 20% more load at most. Default 0.2.
	Ratio float64
	// MinPerSecond is the floor: this many retries per second are allowed however
	// few requests there were. Default 10.
	MinPerSecond float64
	// Window is the span over which requests and retries are counted, in whole
	// seconds (rounded up). Default 10s. Longer smooths bursts but remembers them
	// longer.
	Window time.Duration
	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns Linkerd's defaults: 20% plus 10 retries per second over 10s.
func DefaultConfig() Config {
	return Config{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}
}

// Validate reports negative (or NaN) values.
func (c Config) Validate() error {
	switch {
	case !(c.Ratio >= 0) || math.IsInf(c.Ratio, 0):
		return fmt.Errorf("%w: ratio %v must be a non-negative number", ErrInvalidConfig, c.Ratio)
	case !(c.MinPerSecond >= 0) || math.IsInf(c.MinPerSecond, 0):
		return fmt.Errorf("%w: min per second %v must be a non-negative number", ErrInvalidConfig, c.MinPerSecond)
	case c.Window < 0:
		return fmt.Errorf("%w: window %v is negative", ErrInvalidConfig, c.Window)
	}
	return nil
}

// Budget counts requests and retries per second in a ring of buckets. Request is
// lock-free (a bucket is reset under the mutex once a second); TryRetry takes the
// mutex, so that concurrent retries cannot overdraw the budget. Safe for concurrent
// use.
type Budget struct {
	ratio   float64
	floor   float64 // MinPerSecond × window seconds
	now     func() time.Time
	mu      sync.Mutex
	buckets []bucket
}

type bucket struct {
	sec     atomic.Int64 // unix second of the counts; math.MinInt64 = none
	req     atomic.Int64
	retries atomic.Int64
}

// New returns an empty budget. It panics if cfg does not pass [Config.Validate] (check
// configs when loading them).
func New(cfg Config) *Budget {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultConfig().Window
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := int((cfg.Window + time.Second - 1) / time.Second)
	b := &Budget{
		ratio:   cfg.Ratio,
		floor:   cfg.MinPerSecond * float64(n),
		now:     cfg.Now,
		buckets: make([]bucket, n),
	}
	for i := range b.buckets {
		b.buckets[i].sec.Store(math.MinInt64)
	}
	return b
}

// Request counts one original (non-retry) request.
func (b *Budget) Request() {
	b.current(b.now().Unix()).req.Add(1)
}

// TryRetry reports whether a retry may go out now and, if so, counts it: true while
// the retries in the window stay below Ratio × requests in the window + the floor.
func (b *Budget) TryRetry() bool {
	sec := b.now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	var req, retries int64
	n := int64(len(b.buckets))
	for i := range b.buckets {
		bk := &b.buckets[i]
		if bk.sec.Load() > sec-n {
			req += bk.req.Load()
			retries += bk.retries.Load()
		}
	}
	if float64(retries) >= b.ratio*float64(req)+b.floor {
		return false
	}
	b.rotate(sec).retries.Add(1)
	return true
}

// current returns the bucket of sec, reset first if it still holds an older second.
func (b *Budget) current(sec int64) *bucket {
	bk := b.bucket(sec)
	if bk.sec.Load() < sec {
		b.mu.Lock()
		b.rotate(sec)
		b.mu.Unlock()
	}
	return bk
}

// rotate is current with b.mu held. A bucket only ever moves forward: a caller with an
// older clock reading counts into the newer second instead of wiping it.
func (b *Budget) rotate(sec int64) *bucket {
	bk := b.bucket(sec)
	if bk.sec.Load() < sec {
		bk.req.Store(0)
		bk.retries.Store(0)
		bk.sec.Store(sec)
	}
	return bk
}

func (b *Budget) bucket(sec int64) *bucket {
	n := int64(len(b.buckets))
	return &b.buckets[((sec%n)+n)%n]
}

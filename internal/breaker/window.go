package breaker

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// buckets is the number of buckets of the sliding window.
const buckets = 10

// window counts requests and failures over the last `buckets` bucket widths. Adding is
// two atomic adds; a bucket is reset under a mutex only when time moved into a new
// bucket width (once per width at most), so the closed-state hot path stays lock-free.
type window struct {
	width int64 // ns per bucket
	mu    sync.Mutex
	b     [buckets]bucket
}

type bucket struct {
	epoch atomic.Int64 // unix ns / width of the counts held; math.MinInt64 = none
	req   atomic.Int64
	fail  atomic.Int64
}

func newWindow(d time.Duration) *window {
	w := &window{width: int64(d) / buckets}
	w.reset()
	return w
}

func (w *window) add(now time.Time, failed bool) {
	ep := now.UnixNano() / w.width
	bk := &w.b[mod(ep)]
	if bk.epoch.Load() < ep {
		w.mu.Lock()
		// Only ever move a bucket forward: a caller with an older clock reading must
		// not wipe a newer bucket; it counts into the newer one instead (off by at
		// most one bucket width, on a race).
		if bk.epoch.Load() < ep {
			bk.req.Store(0)
			bk.fail.Store(0)
			bk.epoch.Store(ep)
		}
		w.mu.Unlock()
	}
	bk.req.Add(1)
	if failed {
		bk.fail.Add(1)
	}
}

// sum returns the requests and failures of the buckets within the window at now.
func (w *window) sum(now time.Time) (req, fail int64) {
	ep := now.UnixNano() / w.width
	for i := range w.b {
		bk := &w.b[i]
		if bk.epoch.Load() > ep-buckets {
			req += bk.req.Load()
			fail += bk.fail.Load()
		}
	}
	return req, fail
}

// reset forgets every outcome.
func (w *window) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.b {
		w.b[i].epoch.Store(math.MinInt64)
		w.b[i].req.Store(0)
		w.b[i].fail.Store(0)
	}
}

// mod is ep modulo buckets, non-negative also for clocks before 1970.
func mod(ep int64) int64 {
	m := ep % buckets
	if m < 0 {
		m += buckets
	}
	return m
}

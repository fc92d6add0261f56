package benchkv

import (
	"sync/atomic"
	"time"
)

// The longest stall of a run is the longest interval in which no operation succeeded,
// across all workers: the figure that says how long a leader failover took from a
// client's point of view, which throughput and latency percentiles hide (a worker that
// waits 2 s is one slow sample; the errors that fail fast in the meantime are not timed
// at all).
//
// It is measured with a bitmap over the measured run: time from the start of measuring
// is cut into buckets of StallResolution, and a worker that completes an operation
// marks the bucket of the moment the answer arrived. A marked bucket is only read on
// the hot path (one atomic load of a word that stays in every core's cache), and the
// first success in a bucket writes it, so all workers together write the shared bitmap
// at most about once per bucket. At the end, the longest run of unmarked buckets is the
// longest stall. Each success is placed in the middle of its bucket and the run's ends
// are exact, so the reported figure is within one resolution of the true one.
const (
	// StallResolution is the width of a bucket when the run is short enough.
	StallResolution = 100 * time.Microsecond
	// maxStallBuckets bounds the bitmap at 1 MiB; runs longer than about 14 minutes
	// get wider buckets.
	maxStallBuckets = 1 << 23
)

// stallTracker records which buckets of a run saw a successful operation. mark is safe
// for concurrent use; longest must be called once every mark has returned.
type stallTracker struct {
	start      time.Time
	resolution time.Duration
	buckets    int
	bits       []atomic.Uint64
}

// newStallTracker covers successes from start to start+span; later ones are ignored.
func newStallTracker(start time.Time, span time.Duration) *stallTracker {
	res := StallResolution
	if span/res >= maxStallBuckets {
		res = span/(maxStallBuckets-1) + 1
	}
	n := int(max(span, 0)/res) + 1
	return &stallTracker{start: start, resolution: res, buckets: n, bits: make([]atomic.Uint64, (n+63)/64)}
}

// mark records a successful operation that completed at t.
func (s *stallTracker) mark(t time.Time) {
	d := t.Sub(s.start)
	if d < 0 {
		return
	}
	i := int(d / s.resolution)
	if i >= s.buckets {
		return
	}
	w, bit := &s.bits[i>>6], uint64(1)<<(i&63)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

func (s *stallTracker) marked(i int) bool { return s.bits[i>>6].Load()&(1<<(i&63)) != 0 }

// longest returns the longest stall that began within the first horizon of the run
// (the time in which workers issue operations), and when it began (from start). A
// stall at the start of the run begins at 0; one still going on at horizon lasts until
// the first success after it, or until elapsed (the last worker stopped). Stalls that
// begin after horizon are not counted: the workers are done then, and the last one to
// finish waits alone. It returns zeros when every bucket saw a success, that is when
// no stall was longer than about one resolution.
func (s *stallTracker) longest(horizon, elapsed time.Duration) (length, at time.Duration) {
	if elapsed <= 0 {
		return 0, 0
	}
	n := min(int((elapsed+s.resolution-1)/s.resolution), s.buckets)
	mid := func(i int) time.Duration { return time.Duration(i)*s.resolution + s.resolution/2 }
	for i := 0; i < n; {
		if s.marked(i) {
			i++
			continue
		}
		j := i + 1
		for j < n && !s.marked(j) {
			j++
		}
		from, to := time.Duration(0), elapsed
		if i > 0 {
			from = mid(i - 1)
		}
		if j < n {
			to = min(mid(j), elapsed)
		}
		if from >= horizon {
			break
		}
		if to-from > length {
			length, at = to-from, from
		}
		i = j
	}
	return length, at
}

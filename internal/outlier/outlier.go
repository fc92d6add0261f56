// Package outlier is passive health checking in Envoy's style: the gateway reports
// every request's outcome for the upstream host it went to, and a host that fails
// ConsecutiveFailures times in a row is ejected (taken out of load balancing) for a
// while, longer each time it is ejected again soon after, but never more than
// MaxEjectionPercent of the hosts at once.
//
// The per-request calls (Success, Ejected, and Failure below the threshold) are
// lock-free atomics on the Host; the Detector's mutex is taken only to eject, and for
// Track, Untrack and EjectedCount.
package outlier

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Host is the outlier state of one upstream host. The zero Host is ready to use: keep
// one per endpoint (embedded or alongside it) for as long as the endpoint exists, and
// Track it with the Detector of its service.
type Host struct {
	failures  atomic.Int64 // consecutive failures
	until     atomic.Int64 // unix ns the current ejection ends; 0 = in rotation
	mult      atomic.Int64 // ejection multiplier n (the next ejection is the n+1-th); written under Detector.mu
	lastEnd   atomic.Int64 // unix ns the last ejection ended (or ends); 0 = never ejected
	ejections atomic.Int64 // total ejections
}

// Ejections is how many times h was ejected in total.
func (h *Host) Ejections() int { return int(h.ejections.Load()) }

// EjectedUntil is the end of h's current ejection, the zero time if it is not ejected
// (or not any more).
func (h *Host) EjectedUntil() time.Time {
	u := h.until.Load()
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(0, u)
}

// Detector decides ejections for the hosts of one service; it is safe for concurrent
// use.
type Detector struct {
	cfg     Config
	maxMult int64 // the multiplier beyond which ejections no longer grow

	mu      sync.Mutex
	tracked map[*Host]struct{}
}

// New returns a detector tracking no hosts. It fills zero fields of cfg with their
// defaults and panics if cfg does not pass [Config.Validate] (check configs when
// loading them).
func New(cfg Config) *Detector {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	d := &Detector{cfg: cfg, tracked: map[*Host]struct{}{}, maxMult: 1}
	// Capping the multiplier where the length reaches MaxEjection keeps a host that
	// failed many times from needing ever longer to decay back to the base.
	// Doubling stops before it could overflow, so BaseEjection<<(maxMult-1) is safe.
	for l := cfg.BaseEjection; l < cfg.MaxEjection && l <= math.MaxInt64/2; l *= 2 {
		d.maxMult++
	}
	return d
}

// Track makes h count towards the max-percent rule. Only tracked hosts are ejected.
func (d *Detector) Track(h *Host) {
	d.mu.Lock()
	d.tracked[h] = struct{}{}
	d.mu.Unlock()
}

// Untrack forgets h (the endpoint left the service). Its state stays on the Host.
func (d *Detector) Untrack(h *Host) {
	d.mu.Lock()
	delete(d.tracked, h)
	d.mu.Unlock()
}

// Success records a successful request to h: its consecutive failures start over.
func (d *Detector) Success(h *Host) {
	// Load first: the common case (no failures) then writes nothing, so the hosts'
	// cache lines are not bounced between cores on every request.
	if h.failures.Load() != 0 {
		h.failures.Store(0)
	}
}

// Failure records a failed request to h and reports whether this failure ejected it.
// Failures while h is ejected (requests that were in flight) are ignored.
func (d *Detector) Failure(h *Host) (ejected bool) {
	if d.Ejected(h) {
		return false
	}
	if h.failures.Add(1) < int64(d.cfg.ConsecutiveFailures) {
		return false
	}
	return d.eject(h)
}

// Ejected reports whether h is out of rotation. Once its ejection has ended, h is back
// with its failure count reset.
func (d *Detector) Ejected(h *Host) bool {
	u := h.until.Load()
	if u == 0 {
		return false
	}
	if d.cfg.Now().UnixNano() < u {
		return true
	}
	if h.until.CompareAndSwap(u, 0) {
		h.failures.Store(0)
	}
	return false
}

// EjectedCount is the number of tracked hosts ejected now.
func (d *Detector) EjectedCount() int {
	now := d.cfg.Now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ejectedLocked(now)
}

func (d *Detector) ejectedLocked(now int64) int {
	n := 0
	for h := range d.tracked {
		if now < h.until.Load() {
			n++
		}
	}
	return n
}

// eject ejects h if it is tracked, not ejected already and the max-percent rule
// allows it. The failure count stays (so the next failure tries again) when the rule
// forbids it.
func (d *Detector) eject(h *Host) bool {
	now := d.cfg.Now().UnixNano()
	d.mu.Lock()
	if _, ok := d.tracked[h]; !ok || now < h.until.Load() {
		d.mu.Unlock()
		return false
	}
	if limit := d.cfg.MaxEjectionPercent * len(d.tracked) / 100; d.ejectedLocked(now)+1 > limit {
		d.mu.Unlock()
		return false
	}
	base := int64(d.cfg.BaseEjection)
	m := h.mult.Load()
	if last := h.lastEnd.Load(); last != 0 && now > last {
		m = max(m-(now-last)/base, 0) // one step back per BaseEjection in rotation
	}
	m = min(m+1, d.maxMult)
	dur := min(d.cfg.BaseEjection<<(m-1), d.cfg.MaxEjection)
	end := now + int64(dur)
	h.mult.Store(m)
	h.lastEnd.Store(end)
	h.failures.Store(0)
	h.ejections.Add(1)
	h.until.Store(end)
	d.mu.Unlock()
	if d.cfg.OnEject != nil {
		d.cfg.OnEject(h, dur)
	}
	return true
}

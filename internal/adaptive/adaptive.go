// Package adaptive sheds load with an adaptive concurrency limit: a Limiter admits a
// request only while fewer than Limit() requests are in flight, and moves the limit
// with the latency the upstream shows, so that the excess of an overload is refused
// at once (a fast 503) instead of queueing upstream, where it would slow every
// request down. It is Netflix concurrency-limits' Gradient2 with Envoy
// adaptive_concurrency's measured no-load latency.
//
// # Algorithm
//
// Completed requests are aggregated into sample windows of at least Window (100ms)
// and 10 requests. At the end of each window, with short the mean latency of the
// window's successful requests and long the baseline:
//
//	gradient = clamp((Tolerance × long + Slack) / short, 0.5, 1)
//	target   = limit × gradient + sqrt(limit)     // sqrt(limit): the queue allowed
//	limit    = limit × (1 − Smoothing) + target × Smoothing, within [MinLimit, MaxLimit]
//
// Slack (5 ms) is added to what latency may reach: a service answering in 300 µs that
// takes 1.5 ms because the machine is busy is not overloaded, and sub-millisecond
// latencies jitter by more than their size on shared cores; a real overload queues
// far beyond a few milliseconds.
//
// While latency stays within Tolerance (1.5×) of the baseline the gradient is 1 and
// the limit grows by Smoothing × sqrt(limit) per window (by Smoothing × limit, a slow
// start, while requests are being refused at the limit); once requests queue upstream
// and latency rises beyond that, it shrinks, by at most 10% per window (the 0.5
// floor keeps one slow outlier from halving it). It settles where the gradient
// balances the queue allowance, at a latency of Tolerance / (1 − 1/sqrt(limit)) times
// the baseline: 1.7× at a limit of 100, 2× at 16 (a lower Tolerance trades throughput
// for latency). The limit does not grow in a window in which fewer than limit/2
// requests were ever in flight: demand, not the upstream, was the bound, so the
// latency says nothing about a higher limit.
//
// Requests released as dropped (a timeout, a 503 from the upstream: overload by
// another name) do not count towards short, and cap the window's gradient at
// 1 − (dropped share), so that a window that is half drops shrinks the limit as much
// as a doubled latency. The sqrt(limit) allowance still applies, so a background of
// failures below 1/sqrt(limit) (10% at a limit of 100) does not ratchet the limit
// down; more than that shrinks it until they fall below.
//
// The baseline long is Gradient2's slow exponential average of short: time constant
// 10 minutes, a window counting as at most Tolerance × long so that an overload cannot
// drag it up, and multiplied by 0.95 per window while it exceeds 2 × short so that it
// comes down quickly when the upstream gets faster. It is anchored by measurement
// (Envoy's min RTT calculation, a probe): the limit is held until 10 requests
// admitted under it have completed, and their mean latency becomes the baseline. A
// new limiter starts with such a measurement at InitialLimit (100): starting at
// MinLimit would refuse most requests of a gateway started under load; a baseline
// measured under an overload is corrected by the later probes. Later probes
// run at most every ProbeInterval (60s), and only when the limit shrank in most
// windows of the last interval: that is when the average may have crept up (Gradient2
// lets it follow a sustained overload), or the upstream has become slower for good,
// which the gradient mistakes for overload until a probe sees it. They hold the limit
// at limit/(2 × Tolerance), a third of it, below the capacity the limit settles
// around, and shed about two thirds of requests for one or two round trips: for a
// 10ms upstream, some 20ms per minute of sustained overload.
//
// Each gateway limits only its own requests: a probe measures the latency under the
// other gateways' load, so several gateways overloading one upstream together shed
// later than one limiter in front of it would.
//
// # Cost
//
// Acquire is a compare-and-swap on the in-flight count; Release an atomic decrement,
// two atomic adds and, from the tenth sample of a window, a monotonic clock reading
// (only at every eighth sample once a window has 64). Neither allocates. The limit is
// recomputed under a mutex taken with TryLock by one Release per window.
package adaptive

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	minSamples = 10                             // completed requests per window and per probe
	baseTau    = float64(10 * 60 * time.Second) // time constant of the baseline's average, ns
	dropUnit   = 1 << 32                        // counts: drops in the high half, samples in the low
)

// Token is handed out by Acquire and given back to Release. The zero Token (from a
// refused Acquire) is ignored by Release.
type Token struct {
	epoch    uint32 // the limiter's epoch at Acquire; odd while probing
	inflight int32  // requests in flight, this one included, after Acquire
}

// Limiter is an adaptive concurrency limit. It is safe for concurrent use.
type Limiter struct {
	// Hot: read by every Acquire.
	limit    atomic.Int64
	inflight atomic.Int64
	epoch    atomic.Uint32 // incremented when a probe starts and when it ends

	_ [64]byte
	// Hot: written by every Release.
	counts      atomic.Uint64 // this window's samples and drops (dropUnit)
	sum         atomic.Int64  // this window's summed latency of samples, ns
	maxInflight atomic.Int64  // most in flight at an Acquire of this window's requests
	probeCounts atomic.Uint64 // the probe's samples and drops
	probeSum    atomic.Int64
	windowStart atomic.Int64 // ns since start

	_     [64]byte
	cfg   Config       // fixed at New
	clock func() int64 // nanoseconds since New

	// Under mu.
	mu        sync.Mutex
	estimate  float64 // the limit before rounding down
	saved     float64 // the estimate before the probe in progress
	long      float64 // baseline latency, ns; 0 until measured
	period    int64   // start of the current probe period, ns since New
	windows   int     // windows in the period
	shrinking int     // of them, windows with a latency gradient below 1
}

// New returns a limiter that starts by measuring the latency at InitialLimit (not
// at MinLimit: a gateway started under load would refuse most requests for a round
// trip) and then continues from there; a baseline taken under overload is corrected
// by the later probes, which run at a third of the limit. It takes cfg by value, and panics if cfg does
// not pass [Config.Validate] (check configs when loading them).
func New(cfg Config) *Limiter {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	l := &Limiter{cfg: cfg, clock: clockSince(cfg.Now)}
	l.estimate = float64(cfg.InitialLimit)
	l.saved = l.estimate
	l.limit.Store(int64(cfg.InitialLimit))
	l.epoch.Store(1) // probing
	return l
}

// Limit returns the current concurrency limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// Inflight returns the number of requests admitted and not yet released.
func (l *Limiter) Inflight() int { return int(l.inflight.Load()) }

// Acquire admits a request if fewer than Limit() are in flight, and returns the token
// to pass to Release when it ends. It never waits: when the limit is reached it
// returns false at once, and the request should be refused (503).
func (l *Limiter) Acquire() (Token, bool) {
	// The epoch is read before the limit: a probe lowers the limit before it changes
	// the epoch, so a request that carries the probe's epoch was admitted under the
	// probe's limit.
	e := l.epoch.Load()
	limit := l.limit.Load()
	for {
		n := l.inflight.Load()
		if n >= limit {
			return Token{}, false
		}
		if l.inflight.CompareAndSwap(n, n+1) {
			return Token{epoch: e, inflight: int32(min(n+1, math.MaxInt32))}, true
		}
	}
}

// Release ends the request that t admitted. rtt is its latency; dropped reports that
// it failed in a way that signals overload (a timeout, a 503 or connection refusal
// from the upstream), which shrinks the limit; failures that say nothing about load
// (a 404, a client that went away) are released with dropped false. Releasing a token
// twice corrupts the in-flight count.
func (l *Limiter) Release(t Token, rtt time.Duration, dropped bool) {
	if t.inflight == 0 {
		return
	}
	l.inflight.Add(-1)
	if t.epoch&1 == 1 {
		l.releaseProbe(t, rtt, dropped)
		return
	}
	var c uint64
	if dropped {
		c = l.counts.Add(dropUnit)
	} else {
		l.sum.Add(int64(max(rtt, 0)))
		c = l.counts.Add(1)
	}
	if in := int64(t.inflight); in > l.maxInflight.Load() {
		for {
			cur := l.maxInflight.Load()
			if in <= cur || l.maxInflight.CompareAndSwap(cur, in) {
				break
			}
		}
	}
	// From the 64th sample of a window on, the clock is read at every 8th only: at
	// that rate 8 samples take microseconds.
	if n := c%dropUnit + c/dropUnit; n < minSamples || (n >= 64 && n%8 != 0) {
		return
	}
	now := l.nowNS()
	if now-l.windowStart.Load() < int64(l.cfg.Window) || !l.mu.TryLock() {
		return
	}
	l.endWindow(now)
	l.mu.Unlock()
}

// releaseProbe counts a request admitted during a probe, and ends the probe when it
// has enough.
func (l *Limiter) releaseProbe(t Token, rtt time.Duration, dropped bool) {
	var c uint64
	if dropped {
		c = l.probeCounts.Add(dropUnit)
	} else {
		l.probeSum.Add(int64(max(rtt, 0)))
		c = l.probeCounts.Add(1)
	}
	if c%dropUnit+c/dropUnit < minSamples || l.epoch.Load() != t.epoch || !l.mu.TryLock() {
		return
	}
	if l.epoch.Load() == t.epoch { // not ended by another Release meanwhile
		l.endProbe(l.nowNS())
	}
	l.mu.Unlock()
}

func (l *Limiter) nowNS() int64 { return l.clock() }

// clockSince returns a clock of nanoseconds since now. For time.Now (nil) it reads
// only the monotonic clock, a third of the cost of a full time.Now.
func clockSince(now func() time.Time) func() int64 {
	if now == nil {
		epoch := time.Now()
		return func() int64 { return int64(time.Since(epoch)) }
	}
	epoch := now()
	return func() int64 { return int64(now().Sub(epoch)) }
}

// endWindow recomputes the limit from the window's samples. l.mu is held.
func (l *Limiter) endWindow(now int64) {
	if l.epoch.Load()&1 == 1 {
		return // probing: windows wait
	}
	c := l.counts.Load()
	start := l.windowStart.Load()
	if c%dropUnit+c/dropUnit < minSamples || now-start < int64(l.cfg.Window) {
		return // another Release ended this window just before
	}
	c = l.counts.Swap(0)
	sum := float64(l.sum.Swap(0))
	maxIn := float64(l.maxInflight.Swap(0))
	l.windowStart.Store(now)
	samples, drops := float64(c%dropUnit), float64(c/dropUnit)

	gradient := 1.0
	if samples > 0 {
		short := max(sum/samples, 1)
		if l.long == 0 {
			l.long = short
		} else {
			// A window counts at most as Tolerance × the baseline, so that the
			// latencies of a heavy overload do not drag the baseline up.
			sample := min(short, l.cfg.Tolerance*l.long)
			l.long += (sample - l.long) * (1 - math.Exp(-float64(now-start)/baseTau))
		}
		if l.long > 2*short {
			l.long *= 0.95
		}
		gradient = min(1, max(0.5, (l.cfg.Tolerance*l.long+float64(l.cfg.Slack))/short))
	}
	l.windows++
	if gradient < 1 {
		l.shrinking++
	}
	if drops > 0 {
		gradient = min(gradient, max(0.5, 1-drops/(samples+drops)))
	}
	est := l.estimate
	target := est*gradient + math.Sqrt(est)
	switch {
	case target > est && maxIn < est/2:
		target = est // demand-limited: no evidence for a higher limit
	case gradient == 1 && drops == 0 && maxIn >= math.Floor(est):
		// Latency is healthy and the limit, not the demand, bounded the window:
		// grow like TCP's slow start (the smoothed estimate rises about 20 % per
		// window) rather than by sqrt(limit), which takes seconds to go from 20 to a
		// few hundred while every request over the limit is refused. Should latency
		// rise, the next window shrinks it again.
		target = max(target, 2*est)
	}
	l.setEstimate(est*(1-l.cfg.Smoothing) + target*l.cfg.Smoothing)

	if now-l.period >= int64(l.cfg.ProbeInterval) {
		if 2*l.shrinking > l.windows {
			l.startProbe()
		}
		l.period, l.windows, l.shrinking = now, 0, 0
	}
}

// startProbe holds the limit low until minSamples requests admitted under it have
// completed: at limit/(2 × Tolerance), within MinLimit..MaxLimit. l.mu is held.
func (l *Limiter) startProbe() {
	l.saved = l.estimate
	l.probeCounts.Store(0)
	l.probeSum.Store(0)
	// Before the epoch turns odd: see Acquire.
	l.publish(max(l.cfg.MinLimit, int(l.estimate/(2*l.cfg.Tolerance))))
	l.epoch.Add(1)
}

// endProbe takes the probe's mean latency as the baseline and restores the limit.
// l.mu is held.
func (l *Limiter) endProbe(now int64) {
	c := l.probeCounts.Load()
	if samples := c % dropUnit; samples > 0 {
		l.long = max(float64(l.probeSum.Load())/float64(samples), 1)
	} // else every probe request failed: keep the baseline there is
	l.epoch.Add(1)
	// The window restarts: what completed during the probe was admitted before it.
	l.counts.Store(0)
	l.sum.Store(0)
	l.maxInflight.Store(0)
	l.windowStart.Store(now)
	l.period, l.windows, l.shrinking = now, 0, 0
	l.setEstimate(l.saved)
}

// setEstimate clamps and stores a new limit, and reports a change. l.mu is held.
func (l *Limiter) setEstimate(est float64) {
	est = min(float64(l.cfg.MaxLimit), max(float64(l.cfg.MinLimit), est))
	l.estimate = est
	l.publish(int(est))
}

func (l *Limiter) publish(limit int) {
	if int64(limit) == l.limit.Load() {
		return
	}
	l.limit.Store(int64(limit))
	if l.cfg.OnLimitChange != nil {
		l.cfg.OnLimitChange(limit)
	}
}

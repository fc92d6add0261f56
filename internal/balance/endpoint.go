package balance

import (
	"math"
	"sync/atomic"
	"time"
)

// tau is the time constant of the peak-EWMA latency: a sample's weight falls to 1/e
// after tau without updates. Finagle uses 10 s; here an estimate raised by one stall
// (a GC pause, a busy neighbour) would then keep an instance out of most comparisons
// for half a minute, so the gateway forgets faster: 2 s.
const tau = 2 * time.Second

// peakCap bounds how far one sample can raise the estimate at once: a single stall
// counts as at most peakCap× the current estimate, while a lasting slowdown still
// takes over within a few requests (1 ms to 500 ms in five).
const peakCap = 4

// Endpoint is one upstream instance with the live statistics the policies read. Create
// it with [NewEndpoint] (which precomputes the ID's hash for the hash policy); ID, Addr
// and Weight must not change once the endpoint is in use: replace the endpoint instead.
// The statistics methods are safe for concurrent use.
type Endpoint struct {
	ID     string // unique within a service (e.g. node + "/" + service ID)
	Addr   string // host:port
	Weight int    // Consul Weights.Passing; <=0 is treated as 1

	idHash   uint64        // mix64(FNV-1a(ID)), the endpoint's half of the rendezvous hash
	inflight atomic.Int64  // requests started and not finished
	ewma     atomic.Uint64 // peak-EWMA latency in ns, as float64 bits; 0 = no sample yet
	stamp    atomic.Int64  // unix ns of the last EWMA update
}

// NewEndpoint returns an endpoint without statistics.
func NewEndpoint(id, addr string, weight int) *Endpoint {
	return &Endpoint{ID: id, Addr: addr, Weight: weight, idHash: mix64(fnv1a(id))}
}

// weight is Weight with the Consul convention that an unset weight means 1.
func (e *Endpoint) weight() int64 {
	if e.Weight <= 0 {
		return 1
	}
	return int64(e.Weight)
}

// Start records that a request to e begins. Every Start must be paired with one Finish.
func (e *Endpoint) Start() { e.inflight.Add(1) }

// Finish records that a request to e ended after rtt, observed at now, and folds rtt
// into the peak-EWMA latency the way Finagle does: a sample above the average replaces
// it at once (so a slowing endpoint is avoided immediately), a lower one is averaged in
// with weight 1-exp(-Δt/tau), Δt being the time since the previous update (so the
// estimate recovers with time, not with request count, and a busy endpoint is not
// forgiven faster than an idle one).
func (e *Endpoint) Finish(rtt time.Duration, now time.Time) {
	e.inflight.Add(-1)
	sample := float64(rtt)
	if sample < 1 {
		sample = 1 // 0 means "no sample"; a real sample is at least 1 ns
	}
	nowNs := now.UnixNano()
	for {
		old := e.ewma.Load()
		cur := math.Float64frombits(old)
		next := sample
		if cur > 0 && sample > peakCap*cur {
			next = peakCap * cur
		}
		if sample < cur {
			dt := nowNs - e.stamp.Load()
			if dt < 0 {
				dt = 0 // a concurrent Finish with a later clock reading got in first
			}
			w := math.Exp(-float64(dt) / float64(tau))
			next = cur*w + sample*(1-w)
		}
		if e.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			e.stamp.Store(nowNs)
			return
		}
	}
}

// Inflight is the number of requests started and not yet finished.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

// Latency is the current peak-EWMA latency estimate, 0 before the first sample.
func (e *Endpoint) Latency() time.Duration {
	return time.Duration(math.Float64frombits(e.ewma.Load()))
}

// latency is Latency as float64 ns, without the conversion.
func (e *Endpoint) latency() float64 { return math.Float64frombits(e.ewma.Load()) }

// latencyAt is the estimate decayed towards zero for the time from its last update to nowNs,
// as Finagle's PeakEwma does when it reads its cost. Without the decay an endpoint
// that was slow once would lose every comparison, never be picked again, and so
// never get the sample that would show it recovered.
func (e *Endpoint) latencyAt(nowNs int64) float64 {
	l := e.latency()
	if l == 0 {
		return 0
	}
	dt := nowNs - e.stamp.Load()
	if dt <= 0 {
		return l
	}
	if l = l * math.Exp(-float64(dt)/float64(tau)); l < 1 {
		l = 1 // still "has a sample"
	}
	return l
}

package adaptive

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// sim is a deterministic discrete-event simulation of a gateway in front of one
// upstream, on an injected clock. The upstream serves Capacity requests at once in
// Base; beyond that, requests queue and latency grows linearly with the queue:
// a request admitted with n in flight (itself included) takes Base × max(1, n/Capacity),
// which caps its throughput at Capacity/Base. Clients arrive open-loop (Poisson, a
// fixed seed) at Rate per second; the gateway refuses those the limiter rejects.
type sim struct {
	Capacity int
	Base     time.Duration
	Rate     float64       // arrivals per second
	Timeout  time.Duration // 0: none; else a request taking longer is released as dropped at Timeout
	DropRate float64       // share of requests the upstream fails at once with a 503 (dropped)

	lim     *Limiter
	now     time.Duration
	rng     *rand.Rand
	pending events
	upInfl  int // in flight at the upstream (a timed-out request stays until it ends)

	// Statistics since the last reset.
	stats simStats
}

type simStats struct {
	from               time.Duration
	offered, admitted  int
	rejected           int
	completed          int
	latencySum         time.Duration // of admitted requests, as the client saw them
	limitSum           float64       // Limit() summed over arrivals
	minLimit, maxLimit int
	maxInflight        int
}

type event struct {
	at      time.Duration
	release bool // release to the limiter (else: the upstream finishes a request)
	tok     Token
	rtt     time.Duration
	dropped bool
}

type events []event

func (e events) Len() int           { return len(e) }
func (e events) Less(i, j int) bool { return e[i].at < e[j].at }
func (e events) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)        { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

var simEpoch = time.Unix(1_700_000_000, 0)

// newSim returns a simulation whose limiter has cfg with the simulation's clock.
func newSim(s sim, seed uint64, cfg Config) *sim {
	p := &s
	p.rng = rand.New(rand.NewPCG(seed, seed))
	cfg.Now = func() time.Time { return simEpoch.Add(p.now) }
	// The simulations check the gradient itself; Slack (for jitter of real machines)
	// has its own test.
	if cfg.Slack == 0 {
		cfg.Slack = -1
	}
	p.lim = New(cfg)
	p.reset()
	return p
}

func (s *sim) reset() {
	s.stats = simStats{from: s.now, minLimit: s.lim.Limit(), maxLimit: s.lim.Limit()}
}

// run simulates until the clock reads until.
func (s *sim) run(until time.Duration) {
	next := s.now + s.gap()
	for {
		if len(s.pending) > 0 && s.pending[0].at <= next {
			if s.pending[0].at > until {
				break
			}
			e := heap.Pop(&s.pending).(event)
			s.now = e.at
			if e.release {
				s.lim.Release(e.tok, e.rtt, e.dropped)
				s.stats.completed++
				s.stats.latencySum += e.rtt
				s.observe()
			} else {
				s.upInfl--
			}
			continue
		}
		if next > until {
			break
		}
		s.now = next
		s.arrive()
		next = s.now + s.gap()
	}
	s.now = until
}

func (s *sim) gap() time.Duration {
	return time.Duration(s.rng.ExpFloat64() / s.Rate * float64(time.Second))
}

func (s *sim) arrive() {
	st := &s.stats
	st.offered++
	st.limitSum += float64(s.lim.Limit())
	tok, ok := s.lim.Acquire()
	s.observe()
	if !ok {
		st.rejected++
		return
	}
	st.admitted++
	st.maxInflight = max(st.maxInflight, s.lim.Inflight())
	if s.DropRate > 0 && s.rng.Float64() < s.DropRate {
		heap.Push(&s.pending, event{at: s.now + time.Millisecond, release: true, tok: tok, rtt: time.Millisecond, dropped: true})
		return
	}
	s.upInfl++
	lat := s.Base
	if s.upInfl > s.Capacity {
		lat = time.Duration(float64(s.Base) * float64(s.upInfl) / float64(s.Capacity))
	}
	heap.Push(&s.pending, event{at: s.now + lat})
	if s.Timeout > 0 && lat > s.Timeout {
		heap.Push(&s.pending, event{at: s.now + s.Timeout, release: true, tok: tok, rtt: s.Timeout, dropped: true})
		return
	}
	heap.Push(&s.pending, event{at: s.now + lat, release: true, tok: tok, rtt: lat})
}

func (s *sim) observe() {
	l := s.lim.Limit()
	s.stats.minLimit = min(s.stats.minLimit, l)
	s.stats.maxLimit = max(s.stats.maxLimit, l)
}

// meanLimit is the limit averaged over arrivals since the last reset.
func (st simStats) meanLimit() float64 { return st.limitSum / float64(max(st.offered, 1)) }

// meanLatency of the requests completed since the last reset.
func (st simStats) meanLatency() time.Duration {
	return st.latencySum / time.Duration(max(st.completed, 1))
}

// throughput is admitted requests per second since the last reset.
func (st simStats) throughput(now time.Duration) float64 {
	return float64(st.admitted) / (now - st.from).Seconds()
}

// Slack: a sub-millisecond service slowed by a busy machine (300 µs → 1.5 ms) is not
// taken for an overloaded one, so the limit does not shrink; without Slack it would.
func TestSlackIgnoresJitter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		slack  time.Duration
		shrink bool
	}{{"default slack", 0, false}, {"no slack", -1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Duration
			l := New(Config{Slack: tc.slack, Now: func() time.Time { return simEpoch.Add(now) }})
			serve := func(n int, rtt time.Duration) {
				for i := 0; i < n; i++ {
					tok, ok := l.Acquire()
					if !ok {
						continue
					}
					now += 100 * time.Microsecond
					l.Release(tok, rtt, false)
				}
			}
			serve(200, 300*time.Microsecond) // the baseline
			before := l.Limit()
			serve(20000, 1500*time.Microsecond)
			after := l.Limit()
			if shrank := after < before; shrank != tc.shrink {
				t.Errorf("limit %d → %d; shrink %v, want %v", before, after, shrank, tc.shrink)
			}
		})
	}
}

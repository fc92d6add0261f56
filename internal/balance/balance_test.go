package balance

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func endpoints(weights ...int) []*Endpoint {
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = NewEndpoint(fmt.Sprintf("node%d/web-%d", i, i), fmt.Sprintf("10.0.0.%d:80", i+1), w)
	}
	return eps
}

func mustNew(t testing.TB, name string) Policy {
	t.Helper()
	p, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// counts picks n times with key i (for the hash policy) and returns picks per index.
func counts(t testing.TB, p Policy, eps []*Endpoint, n int) []int {
	t.Helper()
	got := make([]int, len(eps))
	for i := range n {
		e := p.Pick(eps, HashKey([]byte(fmt.Sprint(i))))
		got[slices.Index(eps, e)]++
	}
	return got
}

func TestNew(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"round-robin", RoundRobin},
		{"least-request", LeastRequest},
		{"least-outstanding", LeastRequest},
		{"p2c", P2C},
		{"p2c-ewma", P2C},
		{"", P2C},
		{"hash", Hash},
		{"consistent-hash", Hash},
	} {
		if got := mustNew(t, tc.name).Name(); got != tc.want {
			t.Errorf("New(%q).Name() = %q, want %q", tc.name, got, tc.want)
		}
	}
	_, err := New("random")
	if err == nil {
		t.Fatal("New(random): no error")
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %q", err, n)
		}
	}
}

func TestEmptyAndOne(t *testing.T) {
	one := endpoints(3)
	for _, name := range Names() {
		p := mustNew(t, name)
		if e := p.Pick(nil, 1); e != nil {
			t.Errorf("%s: Pick(nil) = %v", name, e.ID)
		}
		if e := p.Pick([]*Endpoint{}, 1); e != nil {
			t.Errorf("%s: Pick(empty) = %v", name, e.ID)
		}
		for i := range 10 {
			if e := p.Pick(one, uint64(i)); e != one[0] {
				t.Errorf("%s: Pick(one) = %v", name, e)
			}
		}
	}
}

func TestRoundRobinCycles(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {3, 1}, {1, 2, 3}, {0, -1, 2}, {5, 1, 1, 1, 100}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			eps := endpoints(weights...)
			p := mustNew(t, RoundRobin)
			want := make([]int, len(eps))
			total := 0
			for i, e := range eps {
				want[i] = int(e.weight())
				total += want[i]
			}
			cycles := 10000 / total
			for c := range cycles {
				got := make([]int, len(eps))
				longestRun, run := 0, 0
				var prev *Endpoint
				for range total {
					e := p.Pick(eps, 0)
					got[slices.Index(eps, e)]++
					if e == prev {
						run++
					} else {
						run = 1
					}
					prev, longestRun = e, max(longestRun, run)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("cycle %d: picks %v, want %v", c, got, want)
				}
				// Interleaved: the heaviest endpoint's run is at most the weight
				// difference to the next heaviest, plus one.
				ws := slices.Sorted(slices.Values(want))
				limit := 1
				if len(ws) > 1 {
					limit = ws[len(ws)-1] - ws[len(ws)-2] + 1
				}
				if longestRun > limit {
					t.Fatalf("cycle %d: a run of %d picks of one endpoint, want at most %d", c, longestRun, limit)
				}
			}
		})
	}
}

// A changing candidate set (a retry leaving out the tried endpoint) still picks only
// candidates.
func TestRoundRobinChangingSet(t *testing.T) {
	eps := endpoints(1, 2, 3, 4)
	p := mustNew(t, RoundRobin)
	for i := range 1000 {
		cands := slices.Delete(slices.Clone(eps), i%4, i%4+1)
		if e := p.Pick(cands, 0); !slices.Contains(cands, e) {
			t.Fatalf("picked %v, not a candidate", e)
		}
	}
}

func TestLeastRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		weights  []int
		inflight []int
		want     []float64 // expected share per endpoint
	}{
		{"idle one wins", []int{1, 1, 1}, []int{5, 0, 3}, []float64{0, 1, 0}},
		{"per weight", []int{1, 3}, []int{2, 3}, []float64{0, 1}},
		{"ties random", []int{1, 1, 1, 1}, []int{2, 1, 1, 1}, []float64{0, 1. / 3, 1. / 3, 1. / 3}},
		{"weighted ties", []int{2, 1}, []int{2, 1}, []float64{.5, .5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := endpoints(tc.weights...)
			for i, n := range tc.inflight {
				for range n {
					eps[i].Start()
				}
			}
			got := counts(t, mustNew(t, LeastRequest), eps, 10000)
			checkShares(t, got, tc.want, 0.03)
		})
	}
}

func checkShares(t testing.TB, got []int, want []float64, tol float64) {
	t.Helper()
	total := 0
	for _, n := range got {
		total += n
	}
	for i := range got {
		if share := float64(got[i]) / float64(total); math.Abs(share-want[i]) > tol {
			t.Errorf("endpoint %d: share %.3f, want %.3f±%.2f (picks %v)", i, share, want[i], tol, got)
		}
	}
}

// simulate sends picks requests through p, one every interval on a fake clock;
// endpoint i answers after rtts[i], so the in-flight counts follow from the load.
func simulate(p Policy, eps []*Endpoint, rtts []time.Duration, interval time.Duration, picks int) []int {
	got := make([]int, len(eps))
	type req struct {
		e    *Endpoint
		rtt  time.Duration
		done time.Time
	}
	var pending []req
	now := time.Unix(1_700_000_000, 0)
	for range picks {
		now = now.Add(interval)
		pending = slices.DeleteFunc(pending, func(r req) bool {
			if r.done.After(now) {
				return false
			}
			r.e.Finish(r.rtt, r.done)
			return true
		})
		e := p.Pick(eps, 0)
		i := slices.Index(eps, e)
		got[i]++
		e.Start()
		pending = append(pending, req{e, rtts[i], now.Add(rtts[i])})
	}
	return got
}

func TestP2C(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		weights  []int
		rtts     []time.Duration // primes the EWMA with one sample each (0: none)
		inflight []int           // held for the whole test
		load     time.Duration   // simulated time between requests; 0: every request finishes at once
		min, max []float64       // share bounds per endpoint
	}{
		{"10x latency, idle", []int{1, 1}, []time.Duration{ms, 10 * ms}, nil, 0, []float64{.99, 0}, []float64{1, .01}},
		{"10x latency, loaded", []int{1, 1}, []time.Duration{ms, 10 * ms}, nil, 100 * time.Microsecond, []float64{.8, 0}, []float64{1, .2}},
		{"10x latency, heavily loaded", []int{1, 1}, []time.Duration{ms, 10 * ms}, nil, 20 * time.Microsecond, []float64{.75, 0}, []float64{1, .25}},
		// The slow-slow pairs (a third) must go to a slow one: 2/3 is the most for the fast.
		{"10x latency, three, loaded", []int{1, 1, 1}, []time.Duration{ms, 10 * ms, 10 * ms}, nil, 100 * time.Microsecond, []float64{.6, 0, 0}, []float64{1, .2, .2}},
		{"inflight differs", []int{1, 1}, []time.Duration{ms, ms}, []int{10, 0}, 0, []float64{0, .99}, []float64{.01, 1}},
		{"new endpoint gets traffic", []int{1, 1}, []time.Duration{ms, 0}, nil, 0, []float64{.4, .4}, []float64{.6, .6}},
		{"no samples at all", []int{1, 1, 1}, nil, nil, 0, []float64{.3, .3, .3}, []float64{.37, .37, .37}},
		{"weights, loaded", []int{3, 1}, []time.Duration{ms, ms}, nil, 100 * time.Microsecond, []float64{.65, .1}, []float64{.9, .35}},
		{"weights, four", []int{1, 1, 1, 3}, []time.Duration{ms, ms, ms, ms}, nil, 100 * time.Microsecond, []float64{.1, .1, .1, .35}, []float64{.22, .22, .22, .65}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := endpoints(tc.weights...)
			now := time.Unix(1_700_000_000, 0)
			for i, rtt := range tc.rtts {
				if rtt > 0 {
					eps[i].Start()
					eps[i].Finish(rtt, now)
				}
			}
			for i, n := range tc.inflight {
				for range n {
					eps[i].Start()
				}
			}
			rtts := make([]time.Duration, len(eps))
			for i := range rtts {
				rtts[i] = ms
				if i < len(tc.rtts) && tc.rtts[i] > 0 {
					rtts[i] = tc.rtts[i]
				}
			}
			p := mustNew(t, P2C)
			var got []int
			if tc.load == 0 {
				got = counts(t, p, eps, 10000)
			} else {
				got = simulate(p, eps, rtts, tc.load, 10000)
			}
			t.Logf("picks %v", got)
			for i, n := range got {
				share := float64(n) / 10000
				if share < tc.min[i] || share > tc.max[i] {
					t.Errorf("endpoint %d: share %.3f, want %.2f..%.2f (picks %v)", i, share, tc.min[i], tc.max[i], got)
				}
			}
		})
	}
}

// The first of the two samples is drawn with probability proportional to weight, and
// the second is always a different candidate.
func TestSampleTwo(t *testing.T) {
	for _, ws := range [][]int{{1, 1, 1, 1}, {1, 2, 3, 4}, {10, 1}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			eps := endpoints(ws...)
			first := make([]int, len(eps))
			const n = 20000
			for range n {
				a, b := sampleTwo(eps)
				if a == b {
					t.Fatal("sampled the same endpoint twice")
				}
				first[slices.Index(eps, a)]++
			}
			total, _, _ := weights(eps)
			want := make([]float64, len(eps))
			for i, e := range eps {
				want[i] = float64(e.weight()) / float64(total)
			}
			checkShares(t, first, want, 0.02)
		})
	}
}

func TestHashSticky(t *testing.T) {
	eps := endpoints(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	p := mustNew(t, Hash)
	reversed := slices.Clone(eps)
	slices.Reverse(reversed)
	owner := map[uint64]*Endpoint{}
	for i := range 10000 {
		k := HashKey([]byte(fmt.Sprintf("user-%d", i)))
		e := p.Pick(eps, k)
		if p.Pick(eps, k) != e || p.Pick(reversed, k) != e {
			t.Fatalf("key %d: not sticky (or depends on candidate order)", i)
		}
		owner[k] = e
	}
	// Removing one endpoint moves exactly the keys it owned, about 1/n of them.
	removed := eps[3]
	rest := slices.Delete(slices.Clone(eps), 3, 4)
	moved := 0
	for k, was := range owner {
		now := p.Pick(rest, k)
		if now != was {
			if was != removed {
				t.Fatalf("a key moved from %s to %s, though %s is still there", was.ID, now.ID, was.ID)
			}
			moved++
		}
	}
	if share := float64(moved) / float64(len(owner)); share < 0.07 || share > 0.13 {
		t.Errorf("%.3f of the keys moved, want about 0.1", share)
	}
}

func TestHashWeights(t *testing.T) {
	for _, ws := range [][]int{{1, 1, 1, 1}, {1, 2, 3, 4}, {10, 1, 0}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			eps := endpoints(ws...)
			got := counts(t, mustNew(t, Hash), eps, 20000)
			total, _, _ := weights(eps)
			want := make([]float64, len(eps))
			for i, e := range eps {
				want[i] = float64(e.weight()) / float64(total)
			}
			checkShares(t, got, want, 0.02)
		})
	}
}

func TestEWMA(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ms := time.Millisecond
	type sample struct {
		rtt time.Duration
		at  time.Duration // since t0
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		want    time.Duration
	}{
		{"no sample", nil, 0},
		{"first sample is the estimate", []sample{{5 * ms, 0}}, 5 * ms},
		{"a peak replaces at once", []sample{{5 * ms, 0}, {15 * ms, time.Millisecond}}, 15 * ms},
		{"one stall counts at most 4x", []sample{{5 * ms, 0}, {500 * ms, time.Millisecond}}, 20 * ms},
		{"a lasting slowdown takes over in a few requests", []sample{{1 * ms, 0}, {500 * ms, 0}, {500 * ms, 0}, {500 * ms, 0}, {500 * ms, 0}, {500 * ms, 0}}, 500 * ms},
		{"a lower sample at once changes nothing", []sample{{50 * ms, 0}, {10 * ms, 0}}, 50 * ms},
		{"after tau the old value weighs 1/e", []sample{{50 * ms, 0}, {10 * ms, tau}}, 24715177 /* 10ms + 40ms/e */},
		{"long after, the new value", []sample{{50 * ms, 0}, {10 * ms, 100 * tau}}, 10 * ms},
		{"zero rtt is 1ns", []sample{{0, 0}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEndpoint("a", "a:1", 1)
			for _, s := range tc.samples {
				e.Start()
				e.Finish(s.rtt, t0.Add(s.at))
			}
			if got := e.Latency(); math.Abs(float64(got-tc.want)) > 1000 {
				t.Errorf("Latency() = %v, want %v", got, tc.want)
			}
			if e.Inflight() != 0 {
				t.Errorf("Inflight() = %d after paired Start/Finish", e.Inflight())
			}
		})
	}
}

func TestHashKey(t *testing.T) {
	if HashKey([]byte("abc")) != HashKey([]byte("abc")) {
		t.Error("HashKey is not deterministic")
	}
	seen := map[uint64]bool{}
	for i := range 10000 {
		seen[HashKey([]byte(fmt.Sprint(i)))] = true
	}
	if len(seen) != 10000 {
		t.Errorf("%d distinct hashes of 10000 keys", len(seen))
	}
}

func TestConcurrent(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p := mustNew(t, name)
			eps := endpoints(1, 2, 3, 1)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 2000 {
						e := p.Pick(eps, uint64(g*i))
						e.Start()
						e.Finish(time.Duration(i%7+1)*time.Millisecond, time.Now())
					}
				})
			}
			wg.Wait()
			for _, e := range eps {
				if e.Inflight() != 0 {
					t.Errorf("%s: in-flight %d after all finished", e.ID, e.Inflight())
				}
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1, 1}, {1, 2, 3, 4}} {
		eps := endpoints(weights...)
		for _, name := range Names() {
			p := mustNew(t, name)
			if n := testing.AllocsPerRun(1000, func() { p.Pick(eps, 42) }); n != 0 {
				t.Errorf("%s %v: %v allocs per Pick", name, weights, n)
			}
		}
	}
	e := eps0()
	if n := testing.AllocsPerRun(1000, func() { e.Start(); e.Finish(time.Millisecond, time.Now()) }); n != 0 {
		t.Errorf("%v allocs per Start+Finish", n)
	}
	b := []byte("session=abc")
	if n := testing.AllocsPerRun(1000, func() { HashKey(b) }); n != 0 {
		t.Errorf("%v allocs per HashKey", n)
	}
}

func eps0() *Endpoint { return NewEndpoint("a", "a:1", 1) }

func BenchmarkPick(b *testing.B) {
	now := time.Now()
	for _, weighted := range []bool{false, true} {
		ws := make([]int, 10)
		for i := range ws {
			ws[i] = 1
			if weighted {
				ws[i] = i + 1
			}
		}
		eps := endpoints(ws...)
		for i, e := range eps {
			e.Start()
			e.Finish(time.Duration(i+1)*time.Millisecond, now)
		}
		for _, name := range Names() {
			b.Run(fmt.Sprintf("%s/weighted=%v", name, weighted), func(b *testing.B) {
				p := mustNew(b, name)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					var k uint64
					for pb.Next() {
						k++
						p.Pick(eps, k)
					}
				})
			})
		}
	}
}

// A slow endpoint's estimate decays while it gets no traffic, so p2c tries it again
// and can see that it recovered, instead of shunning it for good.
func TestP2CSlowEndpointIsRetriedLater(t *testing.T) {
	slow, fast := NewEndpoint("slow", "a", 1), NewEndpoint("fast", "b", 1)
	slow.Start()
	slow.Finish(2*time.Second, time.Now().Add(-2*time.Minute))
	fast.Start()
	fast.Finish(time.Millisecond, time.Now())
	p, _ := New(P2C)
	var picks int
	for i := 0; i < 100; i++ {
		if p.Pick([]*Endpoint{slow, fast}, 0) == slow {
			picks++
		}
	}
	if picks == 0 {
		t.Errorf("an endpoint slow two minutes ago is never tried again (cost now %v)", time.Duration(slow.latencyAt(time.Now().UnixNano())))
	}
	// Slow a moment ago: avoided.
	slow.Start()
	slow.Finish(2*time.Second, time.Now())
	if p.Pick([]*Endpoint{slow, fast}, 0) == slow {
		t.Error("an endpoint slow just now was picked over a fast one")
	}
}

package gossipsim

import (
	"context"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

func simulate(t testing.TB, p Params, cfg SimConfig) Result {
	t.Helper()
	r, err := Simulate(context.Background(), p, cfg)
	if err != nil {
		t.Fatalf("Simulate(%+v, %+v): %v", p, cfg, err)
	}
	return r
}

// shareAfter is the mean share of live nodes informed just after time d.
func shareAfter(curve []Point, d time.Duration) float64 {
	for _, pt := range curve {
		if pt.T > d {
			return pt.Share
		}
	}
	return curve[len(curve)-1].Share
}

func TestSimulateDeterministic(t *testing.T) {
	p := DefaultParams()
	p.Nodes = 500
	p.Loss = 0.2
	p.Failed = 0.1
	tests := []struct {
		name     string
		a, b     SimConfig
		wantSame bool
	}{
		{"same seed", SimConfig{Runs: 40, Seed: 7}, SimConfig{Runs: 40, Seed: 7}, true},
		{"same seed, other worker count", SimConfig{Runs: 40, Seed: 7, Workers: 1}, SimConfig{Runs: 40, Seed: 7, Workers: 3}, true},
		{"same seed, lockstep", SimConfig{Runs: 40, Seed: 7, Lockstep: true}, SimConfig{Runs: 40, Seed: 7, Lockstep: true, Workers: 1}, true},
		{"other seed", SimConfig{Runs: 40, Seed: 7}, SimConfig{Runs: 40, Seed: 8}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := simulate(t, p, tt.a), simulate(t, p, tt.b)
			same := reflect.DeepEqual(a.Levels, b.Levels) && reflect.DeepEqual(a.Curve, b.Curve) &&
				a.Bandwidth == b.Bandwidth && a.Incomplete == b.Incomplete
			if same != tt.wantSame {
				t.Errorf("results equal = %v, want %v\n a: %+v\n b: %+v", same, tt.wantSame, a.Levels, b.Levels)
			}
		})
	}
}

// TestSimulateSlowsWithLossAndFailures: every lost packet and every packet to a crashed
// node is a wasted transmission, so convergence must slow as either grows.
func TestSimulateSlowsWithLossAndFailures(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		set    func(*Params, float64)
	}{
		{"loss", []float64{0, 0.1, 0.2, 0.3, 0.5}, func(p *Params, v float64) { p.Loss = v }},
		{"failed", []float64{0, 0.1, 0.2, 0.3, 0.5}, func(p *Params, v float64) { p.Failed = v }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev Result
			for i, v := range tt.values {
				p := DefaultParams()
				p.Nodes = 2000
				tt.set(&p, v)
				r := simulate(t, p, SimConfig{Runs: 100, Seed: 1})
				if i == 0 {
					prev = r
					continue
				}
				for _, share := range []float64{0.5, 0.9, 0.99} {
					was, _ := prev.Level(share)
					now, _ := r.Level(share)
					if now.Median <= was.Median {
						t.Errorf("%s %v: %v %% after %v, not slower than %v at %s %v",
							tt.name, v, share*100, now.Median, was.Median, tt.name, tt.values[i-1])
					}
				}
				// Past the first few hops (where one node is a bigger share of a smaller live
				// pool) the curve lies below the previous one.
				for _, d := range []time.Duration{800 * time.Millisecond, 1000 * time.Millisecond, 1200 * time.Millisecond} {
					if shareAfter(r.Curve, d) >= shareAfter(prev.Curve, d) {
						t.Errorf("%s %v: share after %v is %v, not below %v", tt.name, v, d,
							shareAfter(r.Curve, d), shareAfter(prev.Curve, d))
					}
				}
				prev = r
			}
		})
	}
}

// TestSimulatePushGossipRecurrence checks the simulation against the analysis of push
// gossip in synchronous rounds without a retransmit limit: each informed node hits
// fanout random peers, so the uninformed share follows u(t+1) = u(t)·e^(−fanout·i(t)),
// and early on the informed count grows (1+fanout)-fold per round.
func TestSimulatePushGossipRecurrence(t *testing.T) {
	for _, fanout := range []int{2, 3, 4} {
		p := DefaultParams()
		p.Nodes = 100_000
		p.Fanout = fanout
		r := simulate(t, p, SimConfig{Runs: 20, Seed: 3, Lockstep: true, Unlimited: true})
		n := float64(p.Nodes)
		k := float64(fanout)

		informed := func(round int) float64 { return shareAfter(r.Curve, time.Duration(round)*p.Interval) * n }
		if got := informed(1); got != 1+k {
			t.Errorf("fanout %d: %v nodes informed after round 1, want exactly %v", fanout, got, 1+k)
		}
		if ratio := informed(3) / informed(2); math.Abs(ratio-(1+k))/(1+k) > 0.02 {
			t.Errorf("fanout %d: grew %.3f-fold in round 3, want about %v", fanout, ratio, 1+k)
		}

		u := 1 - 1/n
		for round := 1; ; round++ {
			u *= math.Exp(-k * (1 - u))
			if u*n < 20 {
				break // a handful of nodes: too few for a mean of 20 runs to match
			}
			gotI := informed(round) / n
			gotU := 1 - gotI
			// Relative error on whichever side is small; both are means of 20 runs.
			if rel := math.Abs(gotI-(1-u)) / (1 - u); 1-u < 0.5 && rel > 0.02 {
				t.Errorf("fanout %d round %d: informed share %.6g, recurrence %.6g", fanout, round, gotI, 1-u)
			}
			if rel := math.Abs(gotU-u) / u; u <= 0.5 && rel > 0.05 {
				t.Errorf("fanout %d round %d: uninformed share %.6g, recurrence %.6g", fanout, round, gotU, u)
			}
		}
	}
}

// TestSimulateRetransmitLimitLeavesStragglers: the limit is why a real pool can miss a
// node (until push/pull repairs it) when the model says everyone is reached.
func TestSimulateRetransmitLimitLeavesStragglers(t *testing.T) {
	p := DefaultParams()
	p.Nodes = 50
	p.Loss = 0.3
	limited := simulate(t, p, SimConfig{Runs: 400, Seed: 1})
	unlimited := simulate(t, p, SimConfig{Runs: 400, Seed: 1, Unlimited: true})
	if limited.Incomplete < 20 {
		t.Errorf("retransmit limit %d at 30 %% loss: %d of 400 runs incomplete, want stragglers in at least 20",
			p.RetransmitLimit(), limited.Incomplete)
	}
	if unlimited.Incomplete != 0 {
		t.Errorf("without a limit %d of 400 runs incomplete, want 0", unlimited.Incomplete)
	}
	if l, _ := limited.Level(1); l.P95 != Never {
		t.Errorf("95th percentile of time to 100 %% = %v, want Never with %d incomplete runs", l.P95, limited.Incomplete)
	}
}

// TestModelSlowerThanSimulation pins what the docs claim: the model, mean-field with a
// ½ contact factor and synchronous rounds, is slower than memberlist's staggered ticks.
func TestModelSlowerThanSimulation(t *testing.T) {
	for _, n := range []int{10, 100, 1000, 10_000} {
		p := DefaultParams()
		p.Nodes = n
		m, err := Model(p)
		if err != nil {
			t.Fatal(err)
		}
		s := simulate(t, p, SimConfig{Runs: 50, Seed: 1})
		lock := simulate(t, p, SimConfig{Runs: 50, Seed: 1, Lockstep: true})
		for _, share := range []float64{0.9, 0.9999} {
			ml, _ := m.Level(share)
			sl, _ := s.Level(share)
			ll, _ := lock.Level(share)
			if !(sl.Median < ll.Median && ll.Median <= ml.Median) {
				t.Errorf("%d nodes, %v %%: simulation %v, lockstep %v, model %v; want them in increasing order",
					n, share*100, sl.Median, ll.Median, ml.Median)
			}
		}
	}
}

func TestSimulateRefusesBadInput(t *testing.T) {
	p := DefaultParams()
	p.Loss = 1.5
	var pe *ParamError
	if _, err := Simulate(context.Background(), p, SimConfig{}); !errors.As(err, &pe) || pe.Param != "loss" {
		t.Errorf("loss 1.5: err = %v, want a ParamError for loss", err)
	}
	if _, err := Simulate(context.Background(), DefaultParams(), SimConfig{Runs: -1}); !errors.As(err, &pe) || pe.Param != "runs" {
		t.Errorf("runs -1: err = %v, want a ParamError for runs", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Simulate(ctx, DefaultParams(), SimConfig{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestSimulateTinyPools(t *testing.T) {
	for _, tt := range []struct {
		nodes  int
		failed float64
	}{{1, 0}, {2, 0}, {2, 0.5}, {3, 0}} {
		p := DefaultParams()
		p.Nodes = tt.nodes
		p.Failed = tt.failed
		r := simulate(t, p, SimConfig{Runs: 10, Seed: 1})
		if l, _ := r.Level(1); l.Median == Never || r.Incomplete != 0 {
			t.Errorf("%d nodes, failed %v: 100 %% at %v, %d incomplete", tt.nodes, tt.failed, l.Median, r.Incomplete)
		}
	}
}

// BenchmarkSimulate100k is the figure the docs quote: 100 runs at 100,000 nodes.
func BenchmarkSimulate100k(b *testing.B) {
	p := DefaultParams()
	p.Nodes = 100_000
	for b.Loop() {
		simulate(b, p, SimConfig{Runs: 100, Seed: 1})
	}
}

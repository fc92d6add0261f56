package gossipsim

import (
	"context"
	"errors"
	"math"
	"runtime"
	"testing"
	"time"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPool starts a pool and registers its shutdown and a goroutine-leak check.
func startPool(t *testing.T, p Params) *Pool {
	t.Helper()
	before := runtime.NumGoroutine()
	pool, err := StartPool(context.Background(), p, MeasureConfig{Seed: 1})
	if err != nil {
		t.Fatalf("StartPool(%d nodes): %v", p.Nodes, err)
	}
	t.Cleanup(func() {
		if err := pool.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, 10*time.Second, "goroutines of the pool still running", func() bool {
			return runtime.NumGoroutine() <= before
		})
	})
	return pool
}

// TestMeasureAgreesWithSimulation is the check that the simulation predicts a real
// pool: at 50 nodes, the median time until every live node has the broadcast must be
// within a factor 2 of the simulation's, at 0, 10 and 30 % loss.
func TestMeasureAgreesWithSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 50 memberlist instances")
	}
	p := DefaultParams()
	p.Nodes = 50
	pool := startPool(t, p)
	tests := []struct {
		loss   float64
		trials int // at 30 % loss about one trial in six leaves a straggler; more trials keep the median finite
	}{
		{0, 5},
		{0.1, 5},
		{0.3, 21}, // P(11 or more of 21 incomplete) is about 2e-4, against 2e-3 for 7 of 13
	}
	for _, tt := range tests {
		m, err := pool.Measure(context.Background(), tt.loss, 0, MeasureConfig{Trials: tt.trials, Seed: 1})
		if err != nil {
			t.Fatalf("loss %v: Measure: %v", tt.loss, err)
		}
		sp := p
		sp.Loss = tt.loss
		s := simulate(t, sp, SimConfig{Runs: 400, Seed: 1})
		ml, _ := m.Level(1)
		sl, _ := s.Level(1)
		ratio := float64(ml.Median) / float64(sl.Median)
		t.Logf("loss %v: all %d live nodes after %v measured (median of %d, %d incomplete), %v simulated",
			tt.loss, m.Live, ml.Median, m.Runs, m.Incomplete, sl.Median)
		if ml.Median == Never || sl.Median == Never || ratio < 0.5 || ratio > 2 || math.IsNaN(ratio) {
			t.Errorf("loss %v: measured median %v, simulated %v: not within a factor 2", tt.loss, ml.Median, sl.Median)
		}
		if m.Runs != tt.trials || len(m.Curve) < 2 || m.Bandwidth <= 0 || m.Packets <= 0 {
			t.Errorf("loss %v: %d runs, %d curve points, %v B/s, %v packets/s", tt.loss, m.Runs, len(m.Curve), m.Bandwidth, m.Packets)
		}
		if m.MemoryBytes == 0 || m.Goroutines < p.Nodes || m.Setup <= 0 {
			t.Errorf("pool figures missing: %d bytes, %d goroutines, setup %v", m.MemoryBytes, m.Goroutines, m.Setup)
		}
	}
}

// TestMeasureSilencedNodes: failed nodes must miss the broadcast, the live ones must
// all get it, and the pool must be whole again afterwards.
func TestMeasureSilencedNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memberlist instances")
	}
	p := DefaultParams()
	p.Nodes = 10
	pool := startPool(t, p)
	m, err := pool.Measure(context.Background(), 0, 0.2, MeasureConfig{Trials: 1, Seed: 2})
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if m.Live != 8 || m.Incomplete != 0 {
		t.Fatalf("%d live, %d incomplete; want 8 live all reached", m.Live, m.Incomplete)
	}
	if last := m.Curve[len(m.Curve)-1].Share; last != 1 {
		t.Errorf("curve ends at %v of live nodes, want 1 (silenced nodes must not count)", last)
	}
	for _, n := range pool.nodes {
		if n.tr.silenced.Load() || !pool.allAlive(n, len(pool.nodes)) {
			t.Errorf("%v: silenced %v, sees everyone alive %v", n, n.tr.silenced.Load(), pool.allAlive(n, len(pool.nodes)))
		}
	}
}

func TestLossyTransport(t *testing.T) {
	tests := []struct {
		name                   string
		loss                   float64
		silenceSrc, silenceDst bool
		wantMin, wantMax       float64 // share delivered
	}{
		{"no loss", 0, false, false, 1, 1},
		{"30 % loss", 0.3, false, false, 0.67, 0.73},
		{"sender silenced", 0, true, false, 0, 0},
		{"receiver silenced", 0, false, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newLossyNet()
			net.setLoss(tt.loss)
			a := &lossyTransport{net: net, addr: "a"}
			b := &lossyTransport{net: net, addr: "b"}
			net.add(a)
			net.add(b)
			a.silenced.Store(tt.silenceSrc)
			b.silenced.Store(tt.silenceDst)
			const packets = 20000
			ok := 0
			for range packets {
				if a.deliver("b", 100) {
					ok++
				}
			}
			share := float64(ok) / packets
			if share < tt.wantMin || share > tt.wantMax {
				t.Errorf("delivered %v, want %v..%v", share, tt.wantMin, tt.wantMax)
			}
			if got := b.received.Load(); got != uint64(ok*100) {
				t.Errorf("receiver counted %d bytes, want %d", got, ok*100)
			}
			wantSent := uint64(packets * 100)
			if tt.silenceSrc {
				wantSent = 0
			}
			if got := a.sent.Load(); got != wantSent {
				t.Errorf("sender counted %d bytes, want %d", got, wantSent)
			}
			if reach := a.reachable("b"); reach == (tt.silenceSrc || tt.silenceDst) {
				t.Errorf("stream reachable = %v with sender silenced %v, receiver silenced %v", reach, tt.silenceSrc, tt.silenceDst)
			}
		})
	}
}

func TestStartPoolRefusesBadSizes(t *testing.T) {
	for _, n := range []int{0, 1, MaxMeasureNodes + 1} {
		p := DefaultParams()
		p.Nodes = n
		var pe *ParamError
		if _, err := StartPool(context.Background(), p, MeasureConfig{}); !errors.As(err, &pe) || pe.Param != "nodes" {
			t.Errorf("%d nodes: err = %v, want a ParamError for nodes", n, err)
		}
	}
}

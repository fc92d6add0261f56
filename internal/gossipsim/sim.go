package gossipsim

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// SimConfig says how to run the simulation; the pool itself is described by [Params].
type SimConfig struct {
	// Runs is the number of independent runs; percentiles are taken over them.
	// Default 100.
	Runs int
	// Seed makes the result reproducible: run i draws from PCG(Seed, i), so the result
	// does not depend on Workers.
	Seed uint64
	// Workers is how many runs go in parallel. Default GOMAXPROCS.
	Workers int
	// Lockstep makes every node tick at the same instant, the synchronous-rounds
	// idealisation of the textbook analysis. memberlist staggers its tickers, so leave
	// it off to predict a real pool.
	Lockstep bool
	// Unlimited lifts the retransmit limit: informed nodes gossip until all live nodes
	// have the broadcast. For comparing with push gossip's analysis only.
	Unlimited bool
}

// binsPerInterval sets the time resolution of the curves.
const binsPerInterval = 20

// maxRounds bounds a run whatever the parameters; no valid run comes near it, since a
// node's budget runs out RetransmitLimit/Fanout ticks after it heard the broadcast.
const maxRounds = 1 << 20

// Simulate runs a Monte-Carlo of memberlist's broadcast dissemination. Each node ticks
// every Interval at its own random phase (memberlist starts its ticker when the node
// starts); on every tick a node that holds the broadcast and has budget left sends it to
// Fanout distinct random peers other than itself, one transmission each, until it has
// sent it RetransmitLimit times. Peers include failed nodes, which memberlist has not
// yet declared dead; packets to them and lost packets are wasted. A node passes the
// broadcast on from its first tick after receiving it; network latency is taken as
// zero (well under 1 % of a LAN gossip interval).
func Simulate(ctx context.Context, p Params, cfg SimConfig) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	if cfg.Runs == 0 {
		cfg.Runs = 100
	}
	if cfg.Runs < 0 {
		return Result{}, &ParamError{"runs", cfg.Runs, "must be at least 1"}
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, cfg.Runs)

	start := time.Now()
	outcomes := make([]runOutcome, cfg.Runs)
	hists := make([][]int64, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := newSimRun(p, cfg)
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Runs || ctx.Err() != nil {
					break
				}
				outcomes[i] = s.run(uint64(i))
			}
			hists[w] = s.hist
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("gossipsim: simulation stopped: %w", err)
	}

	var hist []int64
	for _, h := range hists {
		if len(h) > len(hist) {
			hist = append(hist, make([]int64, len(h)-len(hist))...)
		}
		for b, c := range h {
			hist[b] += c
		}
	}
	r := Result{Method: MethodSimulation, Params: p, Live: p.live()}
	r.aggregate(outcomes, hist, binWidth(p.Interval))
	r.Elapsed = time.Since(start)
	return r, nil
}

func binWidth(interval time.Duration) time.Duration {
	return max(interval/binsPerInterval, 1)
}

// simRun holds one worker's buffers, reused across its runs.
type simRun struct {
	p        Params
	cfg      SimConfig
	live     int
	limit    int32
	interval int64
	binW     int64
	lossCut  uint64 // a packet is lost when a uniform uint64 falls below lossCut
	thresh   []int  // receipts that complete each level of Shares()

	phase []int64 // tick offset within an interval, ascending: node i ticks i-th
	cum   []float64
	recv  []int64 // receipt time in ns; notYet, or failedNode
	left  []int32 // transmissions left
	perm  []int32
	hist  []int64 // receipts per time bin, summed over this worker's runs
	rng   *rand.PCG
}

const (
	notYet     = -1
	failedNode = -2
)

func newSimRun(p Params, cfg SimConfig) *simRun {
	s := &simRun{
		p:        p,
		cfg:      cfg,
		live:     p.live(),
		limit:    int32(p.RetransmitLimit()),
		interval: int64(p.Interval),
		binW:     int64(binWidth(p.Interval)),
		phase:    make([]int64, p.Nodes),
		recv:     make([]int64, p.Nodes),
		left:     make([]int32, p.Nodes),
		rng:      rand.NewPCG(0, 0),
	}
	if cfg.Unlimited {
		s.limit = math.MaxInt32
	}
	s.lossCut = uint64(p.Loss * (1 << 64)) // Loss < 1, so this cannot overflow
	for _, sh := range Shares() {
		s.thresh = append(s.thresh, threshold(sh, s.live))
	}
	if p.failedCount() > 0 {
		s.perm = make([]int32, p.Nodes)
	}
	return s
}

// intn returns a uniform int in [0, n) (Lemire's multiply-shift; the bias, n/2^64, is
// far below anything a run can show).
func (s *simRun) intn(n int) int {
	hi, _ := bits.Mul64(s.rng.Uint64(), uint64(n))
	return int(hi)
}

func (s *simRun) run(idx uint64) runOutcome {
	s.rng.Seed(s.cfg.Seed, idx)
	n := s.p.Nodes
	s.setPhases()
	for i := range s.recv {
		s.recv[i] = notYet
		s.left[i] = 0
	}
	if s.perm != nil {
		// Partial Fisher-Yates: the first failedCount entries are the failed nodes.
		for i := range s.perm {
			s.perm[i] = int32(i)
		}
		for i := range s.p.failedCount() {
			j := i + s.intn(n-i)
			s.perm[i], s.perm[j] = s.perm[j], s.perm[i]
			s.recv[s.perm[i]] = failedNode
		}
	}
	origin := s.intn(n)
	for s.recv[origin] == failedNode {
		origin = s.intn(n)
	}

	out := runOutcome{levels: make([]time.Duration, len(s.thresh))}
	for i := range out.levels {
		out.levels[i] = Never
	}
	informed := 0
	var sent, delivered int64
	var lastT int64
	receive := func(j int, t int64) {
		s.recv[j] = t
		s.left[j] = s.limit
		informed++
		b := int(t / s.binW)
		if b >= len(s.hist) {
			s.hist = append(s.hist, make([]int64, b+1-len(s.hist))...)
		}
		s.hist[b]++
		// Sends happen in time order (ticks in phase order, round by round), so
		// receipts arrive in time order and each level completes at its receipt.
		for l, k := range s.thresh {
			if informed == k {
				out.levels[l] = time.Duration(t)
			}
		}
	}
	receive(origin, 0)
	active := 1 // informed nodes with budget left

	var targets [8]int
	for round := int64(0); active > 0 && informed < s.live && round < maxRounds; round++ {
		base := round * s.interval
		for i := 0; i < n && informed < s.live; i++ {
			if s.left[i] == 0 {
				continue
			}
			t := base + s.phase[i]
			if s.recv[i] >= t {
				continue // heard it after this tick
			}
			k := min(int32(s.p.Fanout), s.left[i], int32(n-1))
			picked := targets[:0]
			for range k {
				j := s.pickPeer(i, picked)
				if len(picked) < len(targets) {
					picked = append(picked, j)
				}
				s.left[i]--
				sent++
				lastT = t
				if s.rng.Uint64() < s.lossCut || s.recv[j] == failedNode {
					continue
				}
				delivered++
				if s.recv[j] == notYet {
					receive(j, t)
					active++
				}
			}
			if s.left[i] == 0 {
				active--
			}
		}
	}

	out.complete = informed == s.live
	window := lastT
	if out.complete {
		window = int64(out.levels[len(out.levels)-1])
	}
	if window > 0 {
		perNode := float64(s.live) * time.Duration(window).Seconds()
		out.packets = float64(sent+delivered) / perNode
		out.bandwidth = out.packets * float64(s.p.PacketBytes)
	}
	return out
}

// pickPeer draws a random node other than i and not in picked, as memberlist's
// kRandomNodes draws distinct gossip targets. picked holds at most len(targets) nodes;
// beyond that, fanouts are so large that a repeat is negligible.
func (s *simRun) pickPeer(i int, picked []int) int {
	n := s.p.Nodes
	for {
		j := s.intn(n - 1)
		if j >= i {
			j++
		}
		dup := false
		for _, q := range picked {
			if q == j {
				dup = true
				break
			}
		}
		if !dup || len(picked) >= n-1 {
			return j
		}
	}
}

// setPhases draws each node's tick offset in [0, Interval), sorted, so that scanning
// the nodes in index order visits their ticks in time order. Sorted uniforms come from
// normalised sums of exponential spacings, in O(n).
func (s *simRun) setPhases() {
	if s.cfg.Lockstep {
		clear(s.phase)
		return
	}
	if s.cum == nil {
		s.cum = make([]float64, len(s.phase))
	}
	r := rand.New(s.rng)
	sum := 0.0
	for i := range s.cum {
		sum += r.ExpFloat64()
		s.cum[i] = sum
	}
	scale := float64(s.interval) / (sum + r.ExpFloat64())
	for i, c := range s.cum {
		s.phase[i] = int64(c * scale)
	}
}

package gossipsim

import (
	"math"
	"slices"
	"time"
)

// Method names how a [Result] was obtained.
type Method string

const (
	MethodModel       Method = "model"
	MethodSimulation  Method = "simulation"
	MethodMeasurement Method = "measurement"
)

// Never stands for a share of nodes that was not reached.
const Never time.Duration = math.MaxInt64

// Shares are the coverage levels every Result reports, in this order.
func Shares() []float64 { return []float64{0.5, 0.9, 0.99, 0.9999, 1} }

// Level is the time from the broadcast until Share of the live nodes have it.
type Level struct {
	Share float64
	// Median and P95 are taken over runs (trials for a measurement); the model has one
	// curve, so both are its value. Never when more than half (5 %) of the runs did not
	// reach Share.
	Median, P95 time.Duration
}

// Point is one point of a convergence curve: the mean share of live nodes that have the
// broadcast T after it was sent.
type Point struct {
	T     time.Duration
	Share float64
}

// Result is what one method found.
type Result struct {
	Method Method
	Params Params
	// Live is the number of nodes that neither crashed nor can be missed.
	Live int
	// Runs is the number of simulation runs or measurement trials; 1 for the model.
	Runs int
	// Incomplete counts the runs after which some live node still lacked the broadcast
	// because every holder had spent its retransmit budget.
	Incomplete int
	Levels     []Level
	Curve      []Point
	// Bandwidth is bytes per second per live node, sent plus received. For the model it
	// is Serf's ceiling (every gossip slot carries a full packet); for the simulation,
	// full packets actually sent while the broadcast spread; for a measurement, the
	// real bytes through the transport in that time, probes and acks included. Median
	// over runs.
	Bandwidth float64
	// Packets is packets per second per live node, sent plus received, measured like
	// Bandwidth. Unlike bytes, it does not depend on how full the packets are.
	Packets float64
	// Elapsed is the wall time spent computing this Result.
	Elapsed time.Duration
	// Setup is, for a measurement, the time to start the pool and converge membership.
	Setup time.Duration
	// MemoryBytes is, for a measurement, the heap and goroutine stacks the pool holds.
	MemoryBytes uint64
	// Goroutines is, for a measurement, the goroutines the pool runs.
	Goroutines int
}

// Level returns the level for share, and false if Result has none.
func (r Result) Level(share float64) (Level, bool) {
	for _, l := range r.Levels {
		if l.Share == share {
			return l, true
		}
	}
	return Level{}, false
}

// threshold is how many of live nodes make up share: the ⌈share·live⌉-th node to hear
// the broadcast completes the level. The epsilon keeps 0.9·50 from rounding up to 46.
func threshold(share float64, live int) int {
	k := int(math.Ceil(share*float64(live) - 1e-9))
	return max(k, 1)
}

// runOutcome is what one simulation run or measurement trial contributes.
type runOutcome struct {
	levels    []time.Duration // per Shares(), Never if not reached
	complete  bool
	bandwidth float64
	packets   float64
}

// aggregate turns per-run outcomes and a receipt histogram into the Levels, Curve,
// Incomplete and Bandwidth of r.
func (r *Result) aggregate(runs []runOutcome, hist []int64, binWidth time.Duration) {
	r.Runs = len(runs)
	shares := Shares()
	r.Levels = make([]Level, len(shares))
	times := make([]time.Duration, len(runs))
	for i, s := range shares {
		for j, o := range runs {
			times[j] = o.levels[i]
		}
		slices.Sort(times)
		r.Levels[i] = Level{Share: s, Median: quantile(times, 0.5), P95: quantile(times, 0.95)}
	}
	bw := make([]float64, 0, len(runs))
	pk := make([]float64, 0, len(runs))
	r.Incomplete = 0
	for _, o := range runs {
		if !o.complete {
			r.Incomplete++
		}
		bw = append(bw, o.bandwidth)
		pk = append(pk, o.packets)
	}
	slices.Sort(bw)
	slices.Sort(pk)
	r.Bandwidth = quantile(bw, 0.5)
	r.Packets = quantile(pk, 0.5)
	r.Curve = curveFromHistogram(hist, binWidth, len(runs), r.Live)
}

// quantile is the nearest-rank q-quantile of sorted values.
func quantile[T any](sorted []T, q float64) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// curveFromHistogram turns receipt counts per time bin, summed over runs, into the mean
// share of live nodes informed at the end of each bin. At T=0 only the sender has it.
func curveFromHistogram(hist []int64, binWidth time.Duration, runs, live int) []Point {
	total := runs * live
	if total == 0 {
		return nil
	}
	pts := make([]Point, 0, len(hist)+1)
	pts = append(pts, Point{T: 0, Share: 1 / float64(live)})
	var cum int64
	for b, c := range hist {
		cum += c
		pts = append(pts, Point{T: time.Duration(b+1) * binWidth, Share: float64(cum) / float64(total)})
	}
	return pts
}

package gossipsim

import (
	"math"
	"time"
)

// modelCurvePoints is how finely the model's curve is drawn.
const modelCurvePoints = 200

// Model evaluates Serf's convergence model for p: after x gossip rounds (x·Interval),
//
//	I(x) = n / (1 + (n+1)·e^(−c·x)),  c = ½·fanout·(1−loss)·(1−failed),
//
// of the n live nodes have the broadcast. Levels are whole rounds, as in Serf's table:
// the first round at which I(x)/n reaches the share. The curve never reaches n, so the
// 100 % level is the first round at which less than half a node is missing, and not
// before 99.99 % (which Serf's rule puts later for pools under 5,000). Bandwidth is
// Serf's estimate, PacketBytes·fanout/interval, counted in and out.
func Model(p Params) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	n := p.live()
	r := Result{Method: MethodModel, Params: p, Live: n, Runs: 1}
	c := modelContact(p)
	last := 0.0
	for _, s := range Shares() {
		x := ModelRounds(n, c, s)
		d := time.Duration(x * float64(p.Interval))
		r.Levels = append(r.Levels, Level{Share: s, Median: d, P95: d})
		last = max(last, x)
	}
	end := last + 2
	for i := range modelCurvePoints + 1 {
		x := end * float64(i) / modelCurvePoints
		r.Curve = append(r.Curve, Point{
			T:     time.Duration(x * float64(p.Interval)),
			Share: modelInformed(n, c, x) / float64(n),
		})
	}
	r.Packets = float64(p.Fanout) / p.Interval.Seconds() * 2
	r.Bandwidth = float64(p.PacketBytes) * r.Packets
	r.Elapsed = time.Since(start)
	return r, nil
}

// modelContact is the model's c: a node reaches ½·fanout others per round, less what
// is lost or sent to a failed node. The ½ is Serf's contact factor.
func modelContact(p Params) float64 {
	return 0.5 * float64(p.Fanout) * (1 - p.Loss) * (1 - p.Failed)
}

func modelInformed(n int, c, x float64) float64 {
	return float64(n) / (1 + float64(n+1)*math.Exp(-c*x))
}

// ModelRounds is the number of whole gossip rounds after which the model has informed
// share of n nodes (share 1 meaning: less than half a node missing, and at least 99.99 %).
func ModelRounds(n int, c, share float64) float64 {
	if n <= 1 {
		return 0
	}
	if share >= 1 {
		share = math.Max(1-0.5/float64(n), 0.9999)
	}
	// I(x)/n ≥ s  ⇔  x ≥ ln((n+1)·s/(1−s)) / c
	x := math.Log(float64(n+1)*share/(1-share)) / c
	// A share reached exactly at a whole round must not round up to the next one.
	return math.Max(0, math.Ceil(x-1e-9))
}

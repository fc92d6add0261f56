package balance

import "math/rand/v2"

// Interface guard.
var _ Policy = leastRequest{}

// leastRequest picks the endpoint with the fewest in-flight requests per unit of
// weight, scanning all candidates. Ties are broken uniformly at random (reservoir
// sampling), so idle endpoints share the traffic instead of the first one taking all.
type leastRequest struct{}

func (leastRequest) Name() string { return LeastRequest }

func (leastRequest) Pick(cands []*Endpoint, _ uint64) *Endpoint {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	best := cands[0]
	bi, bw := best.Inflight(), best.weight()
	ties := 1
	for _, e := range cands[1:] {
		i, w := e.Inflight(), e.weight()
		// i/w < bi/bw without division: weights are positive.
		l, r := i*bw, bi*w
		switch {
		case l < r:
			best, bi, bw, ties = e, i, w, 1
		case l == r:
			ties++
			if rand.IntN(ties) == 0 {
				best, bi, bw = e, i, w
			}
		}
	}
	return best
}

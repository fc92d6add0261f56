package balance

import "math/rand/v2"

// Interface guard.
var _ Policy = p2c{}

// p2c is the power of two choices over peak-EWMA latency (Finagle's and Linkerd's
// default): sample two distinct candidates with probability proportional to weight and
// take the one with the lower cost latency × (in-flight+1) / weight. Two random choices
// avoid the herding of "always the global best" (every gateway instance would pick the
// same endpoint between updates) while still steering most traffic away from slow or
// loaded endpoints; the scan is O(n) only for the weights, with no per-pick state.
type p2c struct{}

func (p2c) Name() string { return P2C }

func (p2c) Pick(cands []*Endpoint, _ uint64) *Endpoint {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	a, b := sampleTwo(cands)
	// Decay both estimates to the fresher one's last update: the same as decaying to
	// now for the comparison that matters (a busy endpoint's stamp is about now),
	// and free of a clock read.
	ref := max(a.stamp.Load(), b.stamp.Load())
	la, lb := a.latencyAt(ref), b.latencyAt(ref)
	// An endpoint without samples borrows the other's latency (or 1 ns if neither has
	// one), so its cost comes from its in-flight count alone and a new endpoint gets
	// traffic until it has an estimate of its own.
	switch {
	case la == 0 && lb == 0:
		la, lb = 1, 1
	case la == 0:
		la = lb
	case lb == 0:
		lb = la
	}
	ca := la * float64(a.Inflight()+1) / float64(a.weight())
	cb := lb * float64(b.Inflight()+1) / float64(b.weight())
	if cb < ca {
		return b
	}
	return a // also on a tie: a is itself a random choice
}

// sampleTwo draws two distinct candidates (len(cands) >= 2) without replacement, each
// with probability proportional to its weight.
func sampleTwo(cands []*Endpoint) (a, b *Endpoint) {
	n := len(cands)
	total, _, uniform := weights(cands)
	if uniform {
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		return cands[i], cands[j]
	}
	i := at(cands, rand.Int64N(total), -1)
	j := at(cands, rand.Int64N(total-cands[i].weight()), i)
	return cands[i], cands[j]
}

// at returns the index of the candidate covering position r of the weight line, with
// candidate skip left out of the line (-1: none).
func at(cands []*Endpoint, r int64, skip int) int {
	last := 0
	for i, e := range cands {
		if i == skip {
			continue
		}
		last = i
		r -= e.weight()
		if r < 0 {
			return i
		}
	}
	return last // not reached for r < the line's length
}

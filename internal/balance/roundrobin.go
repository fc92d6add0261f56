package balance

import "sync/atomic"

// Interface guard.
var _ Policy = (*roundRobin)(nil)

// roundRobin is interleaved weighted round-robin over one shared atomic counter: the
// counter's value modulo the total weight is a position in a cycle of rounds, where
// round r holds, in candidate order, every endpoint with weight > r. Over one cycle an
// endpoint of weight w gets exactly w picks, spread over the cycle instead of in a
// burst (which "w consecutive picks each" would give), and there is no per-endpoint
// state, so the candidate set may differ from call to call (a changed set only shifts
// the position within the cycle).
type roundRobin struct {
	_ [64]byte // keep the contended counter on its own cache line
	n atomic.Uint64
	_ [56]byte
}

func (*roundRobin) Name() string { return RoundRobin }

func (p *roundRobin) Pick(cands []*Endpoint, _ uint64) *Endpoint {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	total, maxW, uniform := weights(cands)
	c := p.n.Add(1) - 1
	if uniform {
		return cands[c%uint64(len(cands))]
	}
	pos := int64(c % uint64(total))
	// The round of pos is the largest r with picksBefore(r) <= pos; picksBefore(0) = 0
	// and picksBefore(maxW) = total > pos. Binary search: O(n log maxW) per pick.
	lo, hi := int64(0), maxW
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if picksBefore(cands, mid) <= pos {
			lo = mid
		} else {
			hi = mid
		}
	}
	off := pos - picksBefore(cands, lo)
	for _, e := range cands {
		if e.weight() > lo {
			if off == 0 {
				return e
			}
			off--
		}
	}
	return cands[0] // not reached: round lo has more than off members
}

// picksBefore is the number of picks in rounds [0, r): sum of min(weight, r).
func picksBefore(cands []*Endpoint, r int64) int64 {
	var n int64
	for _, e := range cands {
		n += min(e.weight(), r)
	}
	return n
}

// weights returns the total and largest effective weight of cands, and whether all
// are equal (the common case, with a cheaper path in every policy).
func weights(cands []*Endpoint) (total, maxW int64, uniform bool) {
	w0 := cands[0].weight()
	uniform = true
	for _, e := range cands {
		w := e.weight()
		total += w
		maxW = max(maxW, w)
		uniform = uniform && w == w0
	}
	return total, maxW, uniform
}

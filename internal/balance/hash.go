package balance

import "math"

// Interface guard.
var _ Policy = rendezvous{}

// rendezvous is weighted rendezvous (highest-random-weight) hashing: every candidate
// gets the score -weight/ln(u), u = hash(key, endpoint ID) mapped into (0,1), and the
// highest score wins. Compared with a hash ring it needs no shared structure to
// rebuild, removing an endpoint moves only the keys it owned, weights are exact in
// expectation, and a retry that leaves out the endpoints it tried falls through to the
// key's next-best endpoint by itself. The cost is O(n) per pick.
type rendezvous struct{}

func (rendezvous) Name() string { return Hash }

func (rendezvous) Pick(cands []*Endpoint, key uint64) *Endpoint {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	best := cands[0]
	if _, _, uniform := weights(cands); uniform {
		// Equal weights: -w/ln(u) grows with u, so the largest hash wins; no logarithm.
		bh := mix64(key ^ best.idHash)
		for _, e := range cands[1:] {
			if h := mix64(key ^ e.idHash); h > bh {
				best, bh = e, h
			}
		}
		return best
	}
	bs := score(key, best)
	for _, e := range cands[1:] {
		if s := score(key, e); s > bs {
			best, bs = e, s
		}
	}
	return best
}

func score(key uint64, e *Endpoint) float64 {
	// The top 53 bits, centred in their interval: u is never 0 or 1, so ln(u) < 0.
	u := (float64(mix64(key^e.idHash)>>11) + 0.5) / (1 << 53)
	return -float64(e.weight()) / math.Log(u)
}

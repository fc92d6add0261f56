// Package balance holds the load-balancing policies of the edge gateway and the
// chassis client: weighted round-robin, least-request, power-of-two-choices over
// peak-EWMA latency, and weighted rendezvous hashing. An [Endpoint] carries the live
// statistics (in-flight count, latency) the policies read; a [Policy] picks one of a
// candidate slice per request without allocating, and is safe for concurrent use.
//
// Policies never keep the candidate set: the caller passes the current healthy,
// non-excluded endpoints on every call (so a retry can leave out the endpoints it
// already tried, and health changes apply at once).
package balance

import (
	"fmt"
	"strings"
)

// Policy chooses an endpoint for one request.
type Policy interface {
	// Name is the policy's canonical name, as New accepts it.
	Name() string
	// Pick chooses one of cands (nil when cands is empty). key is the request's hash
	// key for the consistent-hash policy (ignored by others). It must not allocate and
	// is safe for concurrent use; it does not modify cands.
	Pick(cands []*Endpoint, key uint64) *Endpoint
}

// The canonical policy names.
const (
	RoundRobin   = "round-robin"
	LeastRequest = "least-request"
	P2C          = "p2c"
	Hash         = "hash"
)

// Names returns the canonical policy names (aliases are not listed).
func Names() []string { return []string{RoundRobin, LeastRequest, P2C, Hash} }

// New returns a new policy by name: "round-robin", "least-request" (alias
// "least-outstanding"), "p2c" (alias "p2c-ewma"; also the default, for name ""), "hash"
// (alias "consistent-hash"). Each call returns a fresh policy (round-robin has its own
// counter), so give every upstream service its own.
func New(name string) (Policy, error) {
	switch name {
	case RoundRobin:
		return &roundRobin{}, nil
	case LeastRequest, "least-outstanding":
		return leastRequest{}, nil
	case P2C, "p2c-ewma", "":
		return p2c{}, nil
	case Hash, "consistent-hash":
		return rendezvous{}, nil
	}
	return nil, fmt.Errorf("balance: unknown policy %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// HashKey returns a 64-bit hash of a header or cookie value, the key of the hash policy.
func HashKey(b []byte) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return mix64(h)
}

// fnv1a is FNV-1a 64 of s, inline so that it neither allocates nor converts.
func fnv1a(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// mix64 is the splitmix64 finalizer: every input bit affects every output bit, which
// FNV alone does not give for short inputs (its high bits barely depend on the last
// byte), and rendezvous hashing compares whole 64-bit values.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

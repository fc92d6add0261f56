package httpapi

import (
	"sync"
)

// sharedResults keeps the last serialized answer of each distinct health query with
// the index it was computed at. A blocking /v1/health/service query that many clients
// hold (Prometheus, gateways) wakes all of them on one change; the first to run
// computes and serializes the answer, the others reuse it instead of each re-running
// the query (Consul re-runs it per waiter and degrades past ~700 instances, consul#4984).
type sharedResults struct {
	mu      sync.Mutex
	entries map[string]sharedEntry
	hits    uint64 // answers served without recomputation (tests read it)
}

type sharedEntry struct {
	index uint64
	body  []byte
}

const maxSharedResults = 4096

func (c *sharedResults) get(key string, index uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.index != index {
		return nil, false
	}
	c.hits++
	return e.body, true
}

func (c *sharedResults) put(key string, index uint64, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxSharedResults {
		// Bounded: when full, start over rather than track recency; a miss only costs
		// one recomputation.
		c.entries = map[string]sharedEntry{}
	}
	c.entries[key] = sharedEntry{index: index, body: body}
}

package httpapi

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// sharedResults keeps the last serialized answer of each distinct health query with
// the index it was computed at. A blocking /v1/health/service query that many clients
// hold (Prometheus, gateways) wakes all of them on one change; the first to run
// computes and serializes the answer, the others reuse it instead of each re-running
// the query (Consul re-runs it per waiter and degrades past ~700 instances, consul#4984).
type sharedResults struct {
	mu      sync.Mutex
	entries map[string]*sharedEntry
	hits    uint64 // answers served without recomputation (tests read it)
}

type sharedEntry struct {
	index uint64
	body  []byte
	// commits is the store's commit count at which the answer was last known to be
	// current (state.Store.Commits); a non-blocking read that finds the count
	// unchanged answers without opening a read transaction.
	commits atomic.Uint64

	gzOnce sync.Once
	gz     []byte
}

// zipped is the answer gzip-compressed, computed by its first reader that asks.
func (e *sharedEntry) zipped() []byte {
	e.gzOnce.Do(func() { e.gz = gzipBytes(e.body) })
	return e.gz
}

// write answers the entry, compressed if the client takes it.
func (e *sharedEntry) write(w http.ResponseWriter) {
	if len(e.body) >= gzipMinSize && wantsGzip(w) {
		writeJSONBody(w, e.body, e.zipped())
		return
	}
	writeJSONBody(w, e.body, nil)
}

const maxSharedResults = 4096

func (c *sharedResults) get(key string, index uint64) (*sharedEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.index != index {
		return nil, false
	}
	c.hits++
	return e, true
}

// current returns the entry for key if no write has been committed since it was last
// known to be current.
func (c *sharedResults) current(key string, commits uint64) (*sharedEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.commits.Load() != commits {
		return nil, false
	}
	c.hits++
	return e, true
}

func (c *sharedResults) put(key string, index uint64, body []byte) *sharedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxSharedResults {
		// Bounded: when full, start over rather than track recency; a miss only costs
		// one recomputation.
		c.entries = map[string]*sharedEntry{}
	}
	e := &sharedEntry{index: index, body: body}
	c.entries[key] = e
	return e
}

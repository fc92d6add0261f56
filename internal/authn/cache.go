package authn

import (
	"hash/maphash"
	"sync"
)

// tokenCache remembers the verdict on a token string until the token expires, so a
// token seen before costs a hash and a map lookup instead of a signature check. It is
// sharded to keep lock contention low and bounded: a full shard first drops its
// expired entries, then arbitrary ones down to 7/8 of its size (Go's map order is
// random, which is enough here: an attacker cannot fill the cache with tokens that are
// not validly signed).
//
// Entries carry the key set generation they were verified with; a new key set
// (Reload, or a change in the KV store) makes every older entry a miss.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards   = 16
	cacheMax      = 10240 // entries in all
	cacheShardMax = cacheMax / cacheShards
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry
	_  [32]byte // keep shards on separate cache lines
}

// cacheEntry is a verdict valid from notBefore to notAfter (unix nanoseconds, the
// leeway already applied).
type cacheEntry struct {
	gen                 uint64
	notBefore, notAfter int64
	res                 Result
}

func newTokenCache() *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(tok []byte) *cacheShard {
	tail := tok // the signature's end: random for every validly signed token
	if len(tail) > 16 {
		tail = tail[len(tail)-16:]
	}
	return &c.shards[maphash.Bytes(c.seed, tail)%cacheShards]
}

// get returns the verdict on tok if one is cached for key set generation gen and
// valid at now.
func (c *tokenCache) get(tok []byte, now int64, gen uint64) (Result, bool) {
	s := c.shard(tok)
	s.mu.RLock()
	e, ok := s.m[string(tok)]
	s.mu.RUnlock()
	if !ok || e.gen != gen || now < e.notBefore || now > e.notAfter {
		return Result{}, false
	}
	return e.res, true
}

func (c *tokenCache) put(tok []byte, e cacheEntry, now int64) {
	s := c.shard(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= cacheShardMax {
		for k, old := range s.m {
			if old.notAfter < now || old.gen != e.gen {
				delete(s.m, k)
			}
		}
		// Still full: drop an eighth, so that the next scan is many inserts away.
		for k := range s.m {
			if len(s.m) <= cacheShardMax*7/8 {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[string(tok)] = e
}

// len counts the entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

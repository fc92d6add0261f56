package authn

import (
	"fmt"
	"testing"
)

func TestTokenCache(t *testing.T) {
	c := newTokenCache()
	const now = 1000
	ok := Result{OK: true, Identity: "x"}
	tests := []struct {
		name  string
		entry cacheEntry
		at    int64
		gen   uint64
		hit   bool
	}{
		{"inside", cacheEntry{notBefore: 0, notAfter: 2000, res: ok}, now, 0, true},
		{"at notAfter", cacheEntry{notBefore: 0, notAfter: now, res: ok}, now, 0, true},
		{"after notAfter", cacheEntry{notBefore: 0, notAfter: now - 1, res: ok}, now, 0, false},
		{"before notBefore", cacheEntry{notBefore: now + 1, notAfter: 2000, res: ok}, now, 0, false},
		{"older key set", cacheEntry{gen: 1, notAfter: 2000, res: ok}, now, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := []byte("tok-" + tc.name)
			c.put(tok, tc.entry, now)
			res, hit := c.get(tok, tc.at, tc.gen)
			if hit != tc.hit || hit && res.Identity != "x" {
				t.Fatalf("hit %v (%+v), want %v", hit, res, tc.hit)
			}
		})
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache()
	for i := range 3 * cacheMax {
		c.put(fmt.Appendf(nil, "token-%d-%x", i, i*7919), cacheEntry{notAfter: 1 << 62, res: Result{OK: true}}, 0)
	}
	if n := c.len(); n > cacheMax || n < cacheMax*7/8 {
		t.Fatalf("cache holds %d entries, want at most %d and close to it", n, cacheMax)
	}
	for i := range c.shards {
		if n := len(c.shards[i].m); n > cacheShardMax {
			t.Fatalf("shard %d holds %d, over %d", i, n, cacheShardMax)
		}
	}
	// Expired entries go first: a full cache of expired tokens makes room at once.
	c = newTokenCache()
	s := c.shard([]byte("fresh"))
	for i := 0; len(s.m) < cacheShardMax; i++ {
		if k := fmt.Appendf(nil, "old-%d", i); c.shard(k) == s {
			c.put(k, cacheEntry{notAfter: 10}, 5)
		}
	}
	c.put([]byte("fresh"), cacheEntry{notAfter: 1 << 62, res: Result{OK: true}}, 100)
	if _, hit := c.get([]byte("fresh"), 100, 0); !hit {
		t.Fatal("fresh entry missing")
	}
	if n := len(s.m); n != 1 {
		t.Fatalf("the fresh entry's shard holds %d entries; the expired ones should have gone", n)
	}
}

// Package ratelimit limits the request rate per key (client IP, API key, route...)
// with one token bucket per key, for the edge gateway's hot path.
//
// The buckets use GCRA, the generic cell rate algorithm: a bucket is a single
// "theoretical arrival time" (TAT) in integer nanoseconds. A request at time now is
// admitted when max(TAT, now) + T − now ≤ B·T, where T = 1/rate is the time one token
// takes to refill (rounded to the nanosecond: an error of 0.00005% at 1,000/s, 0.05%
// at a million) and B the burst, and then advances TAT by T. That is exactly a token
// bucket of size B refilled at rate tokens per second (TAT − now is the time the
// bucket needs to be full again), without floating-point drift: over any interval of
// length d a key is admitted at most B + d/T times, and exactly that many when it
// offers more. The answers for the IETF RateLimit headers follow from TAT directly:
// RateLimit-Limit is B, RateLimit-Remaining floor((B·T − (TAT − now))/T) and
// RateLimit-Reset TAT − now; a denied request can retry after TAT + T − B·T − now.
//
// Keys live in 64 shards, each a map from key to a slot under its own mutex, so Allow
// for a key already tracked takes one lock shared with 1/64 of the keys, one map
// lookup and a few integer operations, and allocates nothing ([Limiter.AllowBytes] does the same for a
// []byte key straight from fasthttp). MaxKeys bounds the slots: a new key past the
// bound reuses the slot of a full bucket (a full bucket and no bucket admit the same
// requests, so nothing is lost) found by a clock hand sampling a few slots, or, when
// all sampled buckets are in use, of the one closest to full (then the least used),
// so that an attacker spraying keys evicts its own one-request buckets and not a
// heavy client's drained one.
//
// A cluster of gateways shares a limit by giving each the share 1/N of it
// ([Config.Share], [Limiter.SetShare]). A change of share keeps each bucket's token
// count (capped at the new burst) rather than refilling or emptying buckets.
package ratelimit

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

const (
	numShards   = 64
	evictSample = 8 // slots the clock hand looks at to pick a victim
)

// Limiter is a set of token buckets, one per key. It is safe for concurrent use.
type Limiter struct {
	rate   float64      // Config.Rate
	burst  int          // Config.Burst
	clock  func() int64 // nanoseconds since the limiter was made: bucket times
	params atomic.Pointer[params]
	seed   maphash.Seed
	shards []shard
}

// params is the effective limit for one share; buckets remember the params their TAT
// was computed with, so that a change of share is applied to each bucket lazily.
type params struct {
	share    float64
	interval int64 // T: nanoseconds per token
	burst    int64 // B
	tau      int64 // B·T: the bucket's capacity in time
}

type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte // keep shards on separate cache lines
}

type shardState struct {
	mu    sync.Mutex
	m     map[string]int32 // key → index in slots
	slots []slot
	limit int // most slots this shard may hold
	hand  int // clock hand for eviction
}

type slot struct {
	key  string
	tat  int64   // theoretical arrival time, ns since epoch
	p    *params // the params tat was computed with
	uses uint32  // requests since stored, halved each time the clock hand passes
}

// New returns a limiter with no buckets. It takes cfg by value, and panics if cfg does
// not pass [Config.Validate] (check configs when loading them).
func New(cfg Config) *Limiter {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	n := min(numShards, cfg.MaxKeys)
	l := &Limiter{
		rate:   cfg.Rate,
		burst:  cfg.Burst,
		clock:  clockSince(cfg.Now),
		seed:   maphash.MakeSeed(),
		shards: make([]shard, n),
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.m = make(map[string]int32)
		s.limit = cfg.MaxKeys / n
		if i < cfg.MaxKeys%n {
			s.limit++
		}
	}
	l.params.Store(l.newParams(cfg.Share))
	return l
}

// clockSince returns a clock of nanoseconds since now. For time.Now (nil) it reads
// only the monotonic clock, a third of the cost of a full time.Now here.
func clockSince(now func() time.Time) func() int64 {
	if now == nil {
		epoch := time.Now()
		return func() int64 { return int64(time.Since(epoch)) }
	}
	epoch := now()
	return func() int64 { return int64(now().Sub(epoch)) }
}

func (l *Limiter) newParams(share float64) *params {
	interval := max(1, int64(math.Round(1e9/(l.rate*share))))
	// The epsilon keeps a product like 29 × 0.1 from flooring to 2.
	burst := max(1, int64(math.Floor(float64(l.burst)*share+1e-9)))
	return &params{share: share, interval: interval, burst: burst, tau: burst * interval}
}

// SetShare sets this gateway's share of the cluster-wide limit, in (0, 1], as
// gateways join and leave; it panics on a value outside that range. Existing buckets
// keep their token counts, capped at the new burst, and refill at the new rate from
// their next request on.
func (l *Limiter) SetShare(share float64) {
	if !(share > 0 && share <= 1) {
		panic("ratelimit: share outside (0, 1]")
	}
	if share*l.rate > MaxRate {
		panic("ratelimit: rate × share above MaxRate")
	}
	if l.params.Load().share == share {
		return
	}
	l.params.Store(l.newParams(share))
}

// Share returns the current share.
func (l *Limiter) Share() float64 { return l.params.Load().share }

// Allow takes one token from key's bucket. It reports whether the request may pass,
// and the values for the RateLimit-Limit, -Remaining and -Reset headers: limit is the
// effective burst, remaining the whole tokens left after this request (0 when
// denied), reset the time until the bucket is full again; retryAfter, when denied,
// is the time until one token is available (0 when admitted). It does not allocate
// for a key already tracked.
func (l *Limiter) Allow(key string) (ok bool, limit, remaining int, reset, retryAfter time.Duration) {
	return l.allow(key, false)
}

// AllowBytes is Allow for a key held in a []byte, such as a header value or address
// from fasthttp; the bytes are only read during the call (copied when a new key is
// stored), so the caller may reuse them.
func (l *Limiter) AllowBytes(key []byte) (ok bool, limit, remaining int, reset, retryAfter time.Duration) {
	return l.allow(unsafe.String(unsafe.SliceData(key), len(key)), true)
}

// allow does the work of Allow; volatile means key aliases caller memory and must be
// copied before it is stored.
func (l *Limiter) allow(key string, volatile bool) (ok bool, limit, remaining int, reset, retryAfter time.Duration) {
	now := l.clock()
	p := l.params.Load()
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]

	s.mu.Lock()
	i, found := s.m[key]
	if !found {
		if volatile {
			key = strings.Clone(key)
		}
		i = s.insert(key, now, p)
	}
	sl := &s.slots[i]
	if sl.uses < math.MaxUint32 {
		sl.uses++
	}
	if sl.p != p {
		sl.rescale(now, p)
	}
	tat := max(sl.tat, now)
	next := tat + p.interval
	if next-now > p.tau {
		s.mu.Unlock()
		return false, int(p.burst), 0, time.Duration(tat - now), time.Duration(next - p.tau - now)
	}
	sl.tat = next
	s.mu.Unlock()
	debt := next - now
	return true, int(p.burst), int((p.tau - debt) / p.interval), time.Duration(debt), 0
}

// rescale converts the bucket from its params to p, keeping its token count (capped
// at p's burst).
func (sl *slot) rescale(now int64, p *params) {
	old := sl.p
	debt := max(0, sl.tat-now)
	tokens := min(float64(old.tau-debt)/float64(old.interval), float64(p.burst))
	sl.tat = now + max(0, p.tau-int64(math.Round(tokens*float64(p.interval))))
	sl.p = p
}

// insert stores a new full bucket for key and returns its slot, evicting another
// bucket when the shard is at its limit. s.mu must be held.
func (s *shard) insert(key string, now int64, p *params) int32 {
	var i int
	if len(s.slots) < s.limit {
		i = len(s.slots)
		if i == cap(s.slots) { // grow by doubling, but never past the limit
			s.slots = append(make([]slot, 0, min(max(2*i, 8), s.limit)), s.slots...)
		}
		s.slots = append(s.slots, slot{})
	} else {
		i = s.victim(now)
		delete(s.m, s.slots[i].key)
	}
	s.slots[i] = slot{key: key, tat: now, p: p}
	s.m[key] = int32(i)
	return int32(i)
}

// victim picks the slot to reuse among the next evictSample slots from the clock
// hand: the first full bucket (its loss changes nothing), or else the one closest to
// full (whose loss hands its key the fewest extra tokens) and, among equally full
// ones, the least used. Use counts are halved as the hand passes, so they measure
// recent use: when every sampled bucket is drained, a key that keeps sending keeps
// its bucket and one that sent a few times loses it.
func (s *shard) victim(now int64) int {
	best, bestUses, bestTAT := -1, uint32(math.MaxUint32), int64(math.MaxInt64)
	for range min(evictSample, len(s.slots)) {
		i := s.hand
		s.hand++
		if s.hand == len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[i]
		if sl.tat <= now {
			return i
		}
		uses := sl.uses
		sl.uses >>= 1
		if sl.tat < bestTAT || (sl.tat == bestTAT && uses < bestUses) {
			best, bestUses, bestTAT = i, uses, sl.tat
		}
	}
	return best
}

// Len returns the number of keys tracked, at most MaxKeys.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.slots)
		s.mu.Unlock()
	}
	return n
}

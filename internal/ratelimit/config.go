package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("ratelimit: invalid config")

// MaxRate is the highest effective rate (Rate × Share) a Limiter can enforce: the
// bucket arithmetic is in whole nanoseconds per token.
const MaxRate = 1e9

// Config tunes a Limiter. Rate has no default; a zero value in any other field takes
// its default. [New] takes the config by value, so changing it later has no effect
// (use [Limiter.SetShare] for the one setting that changes at run time).
type Config struct {
	// Rate is the limit per key, in requests (tokens) per second, cluster-wide when
	// Share is used. It must be > 0 and Rate × Share at most [MaxRate]. No default.
	Rate float64
	// Burst is the bucket size: how many requests a key that has been quiet may send
	// at once. Default max(1, ceil(Rate)), one second's worth. Smaller smooths
	// traffic harder; larger tolerates bursty but well-behaved clients.
	Burst int
	// Share is this gateway's share of a cluster-wide limit, in (0, 1], typically
	// 1/number of gateways; the effective rate is Rate × Share and the effective
	// burst floor(Burst × Share), at least 1. Default 1 (the limit is per gateway).
	// Change it at run time with [Limiter.SetShare].
	Share float64
	// MaxKeys bounds the number of keys (client IPs, API keys...) tracked at once,
	// so that memory stays bounded when an attacker sprays keys. The keys are split
	// over 64 shards of MaxKeys/64 each; when a shard is full a new key evicts a
	// bucket that is full (forgetting a full bucket loses nothing) or, if none of
	// those sampled is, the one closest to full. Each key costs about 90 bytes with
	// an IPv4 address for a key (measured). Default 100,000 (about 9 MB).
	MaxKeys int
	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults for the optional fields (Burst one second's
// worth, Share 1, MaxKeys 100,000). Rate must still be set.
func DefaultConfig() Config {
	return Config{Share: 1, MaxKeys: 100_000}
}

// Validate reports a missing or invalid Rate, negative Burst or MaxKeys, and a Share
// outside (0, 1]. Zero Burst, Share and MaxKeys are valid (they take their defaults).
func (c Config) Validate() error {
	share := c.Share
	if share == 0 {
		share = 1
	}
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("%w: rate %v must be a positive number", ErrInvalidConfig, c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("%w: burst %d is negative", ErrInvalidConfig, c.Burst)
	case !(c.Share >= 0 && c.Share <= 1):
		return fmt.Errorf("%w: share %v is outside (0, 1]", ErrInvalidConfig, c.Share)
	case c.Rate*share > MaxRate:
		return fmt.Errorf("%w: rate %v × share %v is above %v per second", ErrInvalidConfig, c.Rate, share, float64(MaxRate))
	case c.MaxKeys < 0:
		return fmt.Errorf("%w: max keys %d is negative", ErrInvalidConfig, c.MaxKeys)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	if c.Share == 0 {
		c.Share = d.Share
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = d.MaxKeys
	}
	return c
}

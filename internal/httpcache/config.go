package httpcache

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("httpcache: invalid config")

// Config sizes the cache and sets its clock and heuristics. The zero value of each
// field means its default, so Config{} behaves as DefaultConfig().
type Config struct {
	// MaxBytes bounds what the cache holds, in bytes: keys, stored header fields
	// and bodies, plus a fixed bookkeeping overhead per object. Storing past it
	// evicts the least recently used objects. Default 64 MiB. More memory keeps a
	// longer tail of objects.
	MaxBytes int64

	// MaxObjectSize is the largest body stored, in bytes. A larger response goes to
	// the client as it streams in, without being stored; the cache holds at most
	// this much of it (the prefix it read to find out) while it passes. Default
	// 1 MiB. It is clamped to MaxBytes.
	MaxObjectSize int

	// Now is the cache's clock, for ages and freshness. Default time.Now; tests
	// inject their own.
	Now func() time.Time

	// DefaultTTL is the heuristic freshness lifetime (RFC 9111 §4.2.2) given to a
	// response that carries no explicit one (no s-maxage, max-age or Expires) and
	// whose status is heuristically cacheable. Default 0: such responses are not
	// stored, the conservative choice, since the origin said nothing about them.
	DefaultTTL time.Duration
}

// Defaults of the Config fields.
const (
	DefaultMaxBytes      = 64 << 20
	DefaultMaxObjectSize = 1 << 20
)

// DefaultConfig returns the configuration described on each Config field.
func DefaultConfig() Config {
	return Config{
		MaxBytes:      DefaultMaxBytes,
		MaxObjectSize: DefaultMaxObjectSize,
		Now:           time.Now,
	}
}

// Validate reports a field that New would have to replace: negative sizes or TTL.
// New itself never fails; it uses defaults for such values.
func (c Config) Validate() error {
	switch {
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: MaxBytes %d is negative", ErrInvalidConfig, c.MaxBytes)
	case c.MaxObjectSize < 0:
		return fmt.Errorf("%w: MaxObjectSize %d is negative", ErrInvalidConfig, c.MaxObjectSize)
	case c.DefaultTTL < 0:
		return fmt.Errorf("%w: DefaultTTL %v is negative", ErrInvalidConfig, c.DefaultTTL)
	}
	return nil
}

// withDefaults fills unset or invalid fields.
func (c Config) withDefaults() Config {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxObjectSize <= 0 {
		c.MaxObjectSize = DefaultMaxObjectSize
	}
	if int64(c.MaxObjectSize) > c.MaxBytes {
		c.MaxObjectSize = int(c.MaxBytes)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DefaultTTL < 0 {
		c.DefaultTTL = 0
	}
	return c
}

package outlier

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("outlier: invalid config")

// Config tunes a Detector. A zero field takes its default; [New] takes the config by
// value.
type Config struct {
	// ConsecutiveFailures ejects a host after this many failures (connect errors or
	// 5xx, the caller decides) in a row. Default 5.
	ConsecutiveFailures int
	// BaseEjection is how long the first ejection lasts; the n-th lasts
	// BaseEjection × 2^(n-1), and n falls by one for every BaseEjection the host
	// stays in rotation. Default 30s.
	BaseEjection time.Duration
	// MaxEjection caps an ejection's length. Default 300s.
	MaxEjection time.Duration
	// MaxEjectionPercent is the largest share of the tracked hosts that may be
	// ejected at once, in percent (rounded down: at 50, a lone host is never
	// ejected). It keeps a service-wide failure (an overloaded database behind every
	// host) from ejecting every host. Default 50.
	MaxEjectionPercent int
	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time
	// OnEject, if set, is called after every ejection with its length, outside the
	// detector's lock, for logs and metrics.
	OnEject func(h *Host, d time.Duration)
}

// DefaultConfig returns Envoy's defaults for consecutive 5xx ejection: 5 failures,
// 30s doubling up to 300s, at most half the hosts.
func DefaultConfig() Config {
	return Config{
		ConsecutiveFailures: 5,
		BaseEjection:        30 * time.Second,
		MaxEjection:         300 * time.Second,
		MaxEjectionPercent:  50,
	}
}

// Validate reports negative values, a percentage above 100 and a MaxEjection below
// BaseEjection (after defaults). Zero fields are valid: they take their defaults.
func (c Config) Validate() error {
	switch {
	case c.ConsecutiveFailures < 0:
		return fmt.Errorf("%w: consecutive failures %d is negative", ErrInvalidConfig, c.ConsecutiveFailures)
	case c.BaseEjection < 0:
		return fmt.Errorf("%w: base ejection %v is negative", ErrInvalidConfig, c.BaseEjection)
	case c.MaxEjection < 0:
		return fmt.Errorf("%w: max ejection %v is negative", ErrInvalidConfig, c.MaxEjection)
	case c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100:
		return fmt.Errorf("%w: max ejection percent %d is outside 0..100", ErrInvalidConfig, c.MaxEjectionPercent)
	}
	if d := c.withDefaults(); d.MaxEjection < d.BaseEjection {
		return fmt.Errorf("%w: max ejection %v is below the base ejection %v", ErrInvalidConfig, d.MaxEjection, d.BaseEjection)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = d.BaseEjection
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = d.MaxEjection
	}
	if c.MaxEjectionPercent == 0 {
		c.MaxEjectionPercent = d.MaxEjectionPercent
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

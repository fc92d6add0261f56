package breaker

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("breaker: invalid config")

// Config tunes a Breaker. A zero field takes its default; [New] takes the config by
// value, so changing it later has no effect.
type Config struct {
	// Window is the sliding window over which the failure ratio is computed, kept in
	// 10 buckets (so outcomes age out in steps of Window/10). Default 10s. Longer
	// windows react more slowly to an outage and forget it more slowly too.
	Window time.Duration
	// MinRequests is how many completed requests the window must hold before the
	// ratio is judged, so that 1 failure of 1 request does not open the breaker.
	// Default 20.
	MinRequests int
	// FailureRatio opens the breaker when failures/requests in the window reach it, in
	// (0, 1]. Default 0.5.
	FailureRatio float64
	// OpenTimeout is how long the breaker stays open (rejecting everything) before it
	// lets probes through (half-open). Default 5s.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many probe requests may be in flight while half-open;
	// that many consecutive successful probes close the breaker, and any failed probe
	// opens it again. Default 5.
	HalfOpenProbes int
	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time
	// OnStateChange, if set, is called after every transition, outside the breaker's
	// locks (so it may call the breaker). Calls for transitions that race may run
	// concurrently or out of order; each call's from and to describe one transition.
	OnStateChange func(from, to State)
}

// DefaultConfig returns the defaults: a 10s window, judged from 20 requests, opening
// at 50% failures, open for 5s, closing after 5 successful probes.
func DefaultConfig() Config {
	return Config{
		Window:         10 * time.Second,
		MinRequests:    20,
		FailureRatio:   0.5,
		OpenTimeout:    5 * time.Second,
		HalfOpenProbes: 5,
	}
}

// Validate reports values no default can fix: negative durations and counts, and a
// ratio outside (0, 1]. Zero fields are valid (they take their defaults).
func (c Config) Validate() error {
	switch {
	case c.Window < 0 || (c.Window > 0 && c.Window < buckets):
		return fmt.Errorf("%w: window %v must be at least %dns", ErrInvalidConfig, c.Window, buckets)
	case c.MinRequests < 0:
		return fmt.Errorf("%w: min requests %d is negative", ErrInvalidConfig, c.MinRequests)
	case c.FailureRatio < 0 || c.FailureRatio > 1 || c.FailureRatio != c.FailureRatio:
		return fmt.Errorf("%w: failure ratio %v is outside (0, 1]", ErrInvalidConfig, c.FailureRatio)
	case c.OpenTimeout < 0:
		return fmt.Errorf("%w: open timeout %v is negative", ErrInvalidConfig, c.OpenTimeout)
	case c.HalfOpenProbes < 0:
		return fmt.Errorf("%w: half-open probes %d is negative", ErrInvalidConfig, c.HalfOpenProbes)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.MinRequests == 0 {
		c.MinRequests = d.MinRequests
	}
	if c.FailureRatio == 0 {
		c.FailureRatio = d.FailureRatio
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = d.OpenTimeout
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = d.HalfOpenProbes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

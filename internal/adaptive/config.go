package adaptive

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("adaptive: invalid config")

// Config tunes a Limiter. A zero field takes its default, and the defaults suit
// upstreams with latencies from about 1ms to 1s: the algorithm measures the latency it
// compares against instead of being told it. [New] takes the config by value, so
// changing it later has no effect.
type Config struct {
	// InitialLimit is the concurrency limit to start from, once the no-load latency
	// has been measured. Default 100 (or MinLimit or MaxLimit, if 100 is outside
	// them). Too high is safe (the limit shrinks within a few windows, 10% per window
	// at most); too low refuses requests until the limit has grown (a gateway started
	// under 64 concurrent requests refused thousands at 20).
	InitialLimit int
	// MinLimit is the floor: never fewer than this many requests in flight are
	// allowed, and it is the concurrency at which the no-load latency is measured.
	// Default 4 (or MaxLimit, if lower).
	MinLimit int
	// MaxLimit is the ceiling. Default 1000 (or MinLimit, if higher).
	MaxLimit int
	// Smoothing is the weight, in (0, 1], of each window's new limit against the
	// current one. Default 0.2: the limit moves a fifth of the way per window. Higher
	// reacts faster and oscillates more.
	Smoothing float64
	// Tolerance is how far latency may rise above the baseline, as a multiple
	// (>= 1), before the limit shrinks (Gradient2's rttTolerance). Default 1.5. Higher
	// lets more queueing build upstream before shedding; lower sheds sooner but may
	// mistake latency noise for overload.
	Tolerance float64
	// Slack is added to Tolerance × the baseline before latency counts as risen, so
	// that scheduling jitter on a busy machine is not taken for an overloaded
	// upstream. Default 5ms; negative means none.
	Slack time.Duration
	// Window is the shortest sample window: the limit is recomputed at most once per
	// Window and per 10 completed requests, whichever takes longer. Default 100ms.
	Window time.Duration
	// ProbeInterval is the period at which the no-load latency may be measured again
	// (the limit held at a third of itself until 10 requests admitted that way have
	// completed, one or two round trips): at the end of each period in which the
	// limit shrank in most windows, which is when the latency baseline may have crept
	// up, or the upstream have become slower for good. Default 60s (Envoy's
	// min_rtt_calc_interval). Shorter corrects such errors sooner and sheds more
	// during an overload.
	ProbeInterval time.Duration
	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time
	// OnLimitChange, if set, is called with the new limit each time it changes
	// (including to MinLimit and back for a probe), from the Release that ended the
	// window, with the limiter's window lock held: it must be quick and must not call
	// Release; Limit and Inflight are fine.
	OnLimitChange func(limit int)
}

// DefaultConfig returns the defaults: initial limit 20 within [4, 1000], smoothing
// 0.2, tolerance 1.5, 100ms windows, a no-load probe at most every 60s.
func DefaultConfig() Config {
	return Config{
		InitialLimit:  100,
		MinLimit:      4,
		MaxLimit:      1000,
		Smoothing:     0.2,
		Tolerance:     1.5,
		Slack:         5 * time.Millisecond,
		Window:        100 * time.Millisecond,
		ProbeInterval: 60 * time.Second,
	}
}

// Validate reports negative values, MinLimit > MaxLimit, an InitialLimit outside
// them, Smoothing outside (0, 1] and Tolerance below 1; zero fields are valid (they
// take their defaults) and are checked as their defaults.
func (c Config) Validate() error {
	d := c.withDefaults()
	switch {
	case c.InitialLimit < 0 || c.MinLimit < 0 || c.MaxLimit < 0:
		return fmt.Errorf("%w: limits %d, %d, %d: negative", ErrInvalidConfig, c.InitialLimit, c.MinLimit, c.MaxLimit)
	case d.MinLimit > d.MaxLimit:
		return fmt.Errorf("%w: min limit %d is above max limit %d", ErrInvalidConfig, d.MinLimit, d.MaxLimit)
	case d.InitialLimit < d.MinLimit || d.InitialLimit > d.MaxLimit:
		return fmt.Errorf("%w: initial limit %d is outside [%d, %d]", ErrInvalidConfig, d.InitialLimit, d.MinLimit, d.MaxLimit)
	case !(c.Smoothing >= 0 && c.Smoothing <= 1):
		return fmt.Errorf("%w: smoothing %v is outside (0, 1]", ErrInvalidConfig, c.Smoothing)
	case c.Tolerance != 0 && !(c.Tolerance >= 1 && c.Tolerance < 1e6):
		return fmt.Errorf("%w: tolerance %v must be at least 1", ErrInvalidConfig, c.Tolerance)
	case c.Window < 0:
		return fmt.Errorf("%w: window %v is negative", ErrInvalidConfig, c.Window)
	case c.ProbeInterval < 0:
		return fmt.Errorf("%w: probe interval %v is negative", ErrInvalidConfig, c.ProbeInterval)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxLimit == 0 {
		c.MaxLimit = max(d.MaxLimit, c.MinLimit)
	}
	if c.MinLimit == 0 {
		c.MinLimit = min(d.MinLimit, c.MaxLimit)
	}
	if c.InitialLimit == 0 {
		c.InitialLimit = min(max(d.InitialLimit, c.MinLimit), c.MaxLimit)
	}
	if c.Smoothing == 0 {
		c.Smoothing = d.Smoothing
	}
	switch {
	case c.Slack == 0:
		c.Slack = d.Slack
	case c.Slack < 0:
		c.Slack = 0
	}
	if c.Tolerance == 0 {
		c.Tolerance = d.Tolerance
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	return c
}

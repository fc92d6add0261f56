package servicewatch

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrInvalidConfig is wrapped by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("servicewatch: invalid config")

// Config configures a Watcher. A zero duration takes its default; [New] takes the
// config by value.
type Config struct {
	// Client talks to the agent. Required. Its HTTP client must not time out before
	// Wait (consul/api's default client has no overall timeout).
	Client *api.Client
	// Logger receives errors (at Warn for the first of a streak, Debug after) and
	// recoveries. nil discards.
	Logger *slog.Logger
	// Wait is how long one blocking query may wait for a change. Default 5m. Shorter
	// costs more idle requests; the agent caps it (10m for Consul).
	Wait time.Duration
	// Stale allows stale reads: any server answers, spreading the load of many
	// watchers, at the price of possibly lagging the leader. Default false.
	Stale bool
	// MinBackoff and MaxBackoff bound the wait after an error (or an answer that did
	// not block): it doubles from MinBackoff up to MaxBackoff, each wait drawn from
	// its upper half at random so that many watchers do not retry in step. Defaults
	// 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultConfig returns the defaults, without a Client.
func DefaultConfig() Config {
	return Config{Wait: 5 * time.Minute, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// Validate reports a missing client, negative durations and MinBackoff above
// MaxBackoff (after defaults).
func (c Config) Validate() error {
	switch {
	case c.Client == nil:
		return fmt.Errorf("%w: a client is required", ErrInvalidConfig)
	case c.Wait < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0:
		return fmt.Errorf("%w: negative duration (wait %v, backoff %v..%v)", ErrInvalidConfig, c.Wait, c.MinBackoff, c.MaxBackoff)
	}
	if d := c.withDefaults(); d.MinBackoff > d.MaxBackoff {
		return fmt.Errorf("%w: min backoff %v above max backoff %v", ErrInvalidConfig, d.MinBackoff, d.MaxBackoff)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Wait == 0 {
		c.Wait = d.Wait
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Package fakeclock is a manual clock for tests of time-driven code (breakers,
// ejections, budgets, rate limits): it moves only when told to, so tests need no
// sleeps and never depend on the machine's speed.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock at a fixed instant (2023-11-14T22:13:20Z), so runs repeat exactly.
func New() *Clock { return &Clock{t: time.Unix(1_700_000_000, 0)} }

// Now is the clock's time; pass it as a Config.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

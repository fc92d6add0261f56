package health

import "time"

// Clock is the time source of a Manager: check intervals, the first-run
// stagger, TTL expiry and DeregisterCriticalServiceAfter are scheduled with
// it, so tests drive them with a fake clock instead of sleeping. Probe
// timeouts (an HTTP request, a script run) are real-time context deadlines,
// because they bound real I/O.
//
// Implementations must be safe for concurrent use. AfterFunc must not call f
// synchronously from within AfterFunc itself.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, from
	// the goroutine that advances time) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// RealClock is the wall clock (package time).
type RealClock struct{}

var _ Clock = RealClock{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

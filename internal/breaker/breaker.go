// Package breaker is a circuit breaker for calls to one upstream: closed, it lets every
// request through and watches the failure ratio over a sliding window; at the
// configured ratio it opens and rejects everything for OpenTimeout, then lets a few
// probes through (half-open) and closes after that many consecutive successes, or
// opens again on a failed probe.
//
// Use:
//
//	t, ok := b.Allow()
//	if !ok {
//		// reject: 503 with Retry-After: b.RetryAfter()
//	}
//	err := call()
//	b.Done(t, err == nil)
//
// In the closed state Allow is one atomic load and Done two or three atomic adds
// (plus a scan of the 10 window buckets after a failure); a mutex is taken only for
// transitions, bucket rotation and the half-open probe accounting.
package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// State is the breaker's state.
type State int32

// The states.
const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Ticket is handed out by Allow and given back to Done. It records the state episode
// the request was admitted in, so that a result arriving after the breaker changed
// state (a slow request admitted while closed finishing after it opened) is ignored
// instead of being counted against the new state. The zero Ticket is ignored by Done.
type Ticket struct {
	word  uint64 // the breaker's state word at Allow
	probe bool   // admitted as a half-open probe
}

// Breaker is a circuit breaker; it is safe for concurrent use.
type Breaker struct {
	cfg Config

	// word is generation<<2 | state: the generation grows with every transition, so
	// a Ticket compares one word to know whether its episode is still current.
	// Transitions store it under mu; the closed-state paths only load it.
	word      atomic.Uint64
	openUntil atomic.Int64 // unix ns at which Open ends

	win *window

	mu       sync.Mutex // transitions and the fields below
	probes   int        // half-open probes in flight
	probesOK int        // consecutive successful probes
}

const stateMask = 3

// New returns a closed breaker. It fills zero fields of cfg with their defaults and
// panics if cfg does not pass [Config.Validate] (check configs when loading them).
func New(cfg Config) *Breaker {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	b := &Breaker{cfg: cfg, win: newWindow(cfg.Window)}
	// Generation 1: a zero Ticket never matches.
	b.word.Store(1<<2 | uint64(Closed))
	return b
}

// Allow reports whether a request may go out now; false means reject it (open, or
// half-open with all probe slots taken). Every true must be followed by one Done with
// the ticket.
func (b *Breaker) Allow() (Ticket, bool) {
	w := b.word.Load()
	switch State(w & stateMask) {
	case Closed:
		return Ticket{word: w}, true
	case Open:
		if b.cfg.Now().UnixNano() < b.openUntil.Load() {
			return Ticket{}, false
		}
	}
	return b.allowSlow()
}

// allowSlow handles half-open (and open past its timeout) under the mutex.
func (b *Breaker) allowSlow() (Ticket, bool) {
	b.mu.Lock()
	from, to, changed := b.halfOpenIfDue(b.cfg.Now())
	w := b.word.Load()
	t, ok := Ticket{}, false
	switch State(w & stateMask) {
	case Closed:
		t, ok = Ticket{word: w}, true
	case HalfOpen:
		if b.probes < b.cfg.HalfOpenProbes {
			b.probes++
			t, ok = Ticket{word: w, probe: true}, true
		}
	}
	b.mu.Unlock()
	if changed {
		b.notify(from, to)
	}
	return t, ok
}

// Done records the outcome of a request admitted with t.
func (b *Breaker) Done(t Ticket, success bool) {
	w := b.word.Load()
	if t.word != w {
		return // zero ticket, or the state changed since Allow: the outcome is stale
	}
	switch State(w & stateMask) {
	case Closed:
		now := b.cfg.Now()
		b.win.add(now, !success)
		// Only a failure can raise the ratio, so only a failure judges it: a
		// success never opens the breaker.
		if success {
			return
		}
		req, fail := b.win.sum(now)
		if req >= int64(b.cfg.MinRequests) && float64(fail) >= b.cfg.FailureRatio*float64(req) {
			b.transition(w, Open, now)
		}
	case HalfOpen:
		if !t.probe {
			return
		}
		b.mu.Lock()
		if b.word.Load() != w {
			b.mu.Unlock()
			return
		}
		b.probes--
		var from, to State
		changed := false
		switch {
		case !success:
			from, to, changed = b.set(w, Open, b.cfg.Now())
		case b.probesOK+1 >= b.cfg.HalfOpenProbes:
			from, to, changed = b.set(w, Closed, time.Time{})
		default:
			b.probesOK++
		}
		b.mu.Unlock()
		if changed {
			b.notify(from, to)
		}
	}
}

// State is the current state. An open breaker whose timeout has passed reports (and
// becomes) half-open.
func (b *Breaker) State() State {
	w := b.word.Load()
	if State(w&stateMask) == Open && b.cfg.Now().UnixNano() >= b.openUntil.Load() {
		b.mu.Lock()
		from, to, changed := b.halfOpenIfDue(b.cfg.Now())
		w = b.word.Load()
		b.mu.Unlock()
		if changed {
			b.notify(from, to)
		}
	}
	return State(w & stateMask)
}

// RetryAfter is, while open, the time until the breaker lets probes through; 0
// otherwise (and once that time has come).
func (b *Breaker) RetryAfter() time.Duration {
	if State(b.word.Load()&stateMask) != Open {
		return 0
	}
	return max(time.Duration(b.openUntil.Load()-b.cfg.Now().UnixNano()), 0)
}

// transition moves from the state word w to `to` unless another goroutine already
// moved on, and reports the change.
func (b *Breaker) transition(w uint64, to State, now time.Time) {
	b.mu.Lock()
	from, to, changed := b.set(w, to, now)
	b.mu.Unlock()
	if changed {
		b.notify(from, to)
	}
}

// halfOpenIfDue moves an open breaker whose timeout passed to half-open. b.mu is held.
func (b *Breaker) halfOpenIfDue(now time.Time) (from, to State, changed bool) {
	w := b.word.Load()
	if State(w&stateMask) != Open || now.UnixNano() < b.openUntil.Load() {
		return 0, 0, false
	}
	return b.set(w, HalfOpen, now)
}

// set moves from the state word w to `to` if w is still current. b.mu is held.
func (b *Breaker) set(w uint64, to State, now time.Time) (from, _ State, changed bool) {
	if b.word.Load() != w {
		return 0, 0, false
	}
	switch to {
	case Open:
		b.openUntil.Store(now.Add(b.cfg.OpenTimeout).UnixNano())
	case HalfOpen:
		b.probes, b.probesOK = 0, 0
	case Closed:
		// Start from a clean window: the failures that opened the breaker must not
		// open it again right away.
		b.win.reset()
	}
	gen := w >> 2
	b.word.Store((gen+1)<<2 | uint64(to))
	return State(w & stateMask), to, true
}

func (b *Breaker) notify(from, to State) {
	if b.cfg.OnStateChange != nil {
		b.cfg.OnStateChange(from, to)
	}
}

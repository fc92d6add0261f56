package health

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual Clock: timers fire only in Advance, from the
// goroutine that calls it, in deadline order.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

var _ Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves time forward by d, firing due timers one by one.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.at.After(target) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t == next })
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// deadlines returns the pending timers' deadlines relative to now.
func (c *fakeClock) deadlines() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d []time.Duration
	for _, t := range c.timers {
		d = append(d, t.at.Sub(c.now))
	}
	return d
}

// fireNext advances time exactly to the earliest pending deadline, so that
// a timer registered while the fired one runs is relative to that instant.
func (c *fakeClock) fireNext(tb testing.TB) {
	tb.Helper()
	d := c.deadlines()
	if len(d) == 0 {
		tb.Fatal("fireNext: no pending timer")
	}
	c.Advance(slices.Min(d))
}

// waitPending waits until exactly n timers are pending.
func (c *fakeClock) waitPending(tb testing.TB, n int) {
	tb.Helper()
	waitFor(tb, func() bool { return len(c.deadlines()) == n }, "%d pending timers (have %d)", n, len(c.deadlines()))
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(tb testing.TB, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

// recorder collects callbacks.
type recorder struct {
	mu      sync.Mutex
	updates []Update
	deregs  []Deregistration
}

func (r *recorder) notify(u Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
}

func (r *recorder) deregister(d Deregistration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deregs = append(r.deregs, d)
}

func (r *recorder) snapshot() ([]Update, []Deregistration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates), slices.Clone(r.deregs)
}

// updatesOf returns the updates delivered for id.
func (r *recorder) updatesOf(id string) []Update {
	u, _ := r.snapshot()
	return slices.DeleteFunc(u, func(u Update) bool { return u.CheckID != id })
}

// waitUpdate waits until an update for id satisfies pred and returns it.
func (r *recorder) waitUpdate(tb testing.TB, id string, pred func(Update) bool) Update {
	tb.Helper()
	var got Update
	waitFor(tb, func() bool {
		for _, u := range r.updatesOf(id) {
			if pred(u) {
				got = u
				return true
			}
		}
		return false
	}, "an update of %q (have %+v)", id, r.updatesOf(id))
	return got
}

// newTestManager returns a Manager whose callbacks go to a recorder; it is
// shut down when the test ends.
func newTestManager(tb testing.TB, cfg Config) (*Manager, *recorder) {
	tb.Helper()
	rec := &recorder{}
	cfg.Notify = rec.notify
	cfg.Deregister = rec.deregister
	m := NewManager(cfg)
	tb.Cleanup(m.Shutdown)
	return m, rec
}

func mustStatus(tb testing.TB, m *Manager, id string) Update {
	tb.Helper()
	u, ok := m.Status(id)
	if !ok {
		tb.Fatalf("Status(%q): unknown check", id)
	}
	return u
}

func runtimeStat(path string) (os.FileInfo, error) { return os.Stat(path) }

// newQuietTLSServer is httptest.NewTLSServer without the "TLS handshake
// error" log lines that the tests provoke on purpose.
func newQuietTLSServer(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

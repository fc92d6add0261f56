package health

import (
	"context"
	"math/rand/v2"
	"time"
)

// prober runs one check once. It must return promptly once ctx is done.
type prober interface {
	probe(ctx context.Context) result
}

// runner is the one periodic loop shared by every interval-based check kind
// (Consul copies it into each check type). It waits a random stagger in
// [0, interval) so that checks registered together do not fire together,
// then runs the probe with a context that ends after timeout or at stop,
// hands the result to report, and waits interval before the next run. Runs
// never overlap. stop cancels a run in flight, discards its result and
// waits for the loop to exit.
type runner struct {
	clock    Clock
	interval time.Duration
	timeout  time.Duration
	probe    prober
	report   func(result)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newRunner(clock Clock, interval, timeout time.Duration, p prober, report func(result)) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &runner{
		clock: clock, interval: interval, timeout: timeout, probe: p, report: report,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// start launches the loop. Call it exactly once.
func (r *runner) start() { go r.loop(randomStagger(r.interval)) }

// stop ends the loop and waits for it; safe to call more than once, but
// only after start.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

func (r *runner) loop(stagger time.Duration) {
	defer close(r.done)
	wait := stagger
	for {
		if !r.sleep(wait) {
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		res := r.probe.probe(ctx)
		cancel()
		if r.ctx.Err() != nil {
			return // stopped during the run: its result is moot
		}
		r.report(res)
		wait = r.interval
	}
}

// sleep waits d on the clock; false means the runner was stopped.
func (r *runner) sleep(d time.Duration) bool {
	fired := make(chan struct{})
	t := r.clock.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
		return true
	case <-r.ctx.Done():
		t.Stop()
		return false
	}
}

// randomStagger returns a random duration in [0, d) (Consul's lib.RandomStagger).
func randomStagger(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

package health

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProber counts runs and can block until its context ends.
type fakeProber struct {
	runs    atomic.Int32
	active  atomic.Int32
	overlap atomic.Bool
	block   bool
	started chan struct{}
	ctxErr  chan error
}

func (p *fakeProber) probe(ctx context.Context) result {
	if p.active.Add(1) > 1 {
		p.overlap.Store(true)
	}
	defer p.active.Add(-1)
	n := p.runs.Add(1)
	if p.block {
		p.started <- struct{}{}
		<-ctx.Done()
		p.ctxErr <- ctx.Err()
	}
	return result{StatusPassing, string(rune('0' + n))}
}

func TestRunnerSchedule(t *testing.T) {
	clk := newFakeClock()
	p := &fakeProber{}
	var mu sync.Mutex
	var reports []string
	r := newRunner(clk, 10*time.Second, time.Second, p, func(res result) {
		mu.Lock()
		reports = append(reports, res.output)
		mu.Unlock()
	})
	r.start()
	clk.waitPending(t, 1)
	if d := clk.deadlines()[0]; d < 0 || d >= 10*time.Second {
		t.Fatalf("first run after %v, want a stagger in [0, 10s)", d)
	}
	if p.runs.Load() != 0 {
		t.Fatal("probe ran before the stagger elapsed")
	}
	for i := 1; i <= 3; i++ {
		clk.fireNext(t) // the stagger, then exactly one interval each
		clk.waitPending(t, 1)
		if got := p.runs.Load(); got != int32(i) {
			t.Fatalf("after %d intervals: %d runs", i, got)
		}
		if d := clk.deadlines()[0]; d != 10*time.Second {
			t.Fatalf("next run in %v, want the interval", d)
		}
	}
	r.stop()
	r.stop() // idempotent
	clk.waitPending(t, 0)
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 3 || reports[0] != "1" || reports[2] != "3" {
		t.Errorf("reports %q", reports)
	}
	if p.overlap.Load() {
		t.Error("runs overlapped")
	}
}

func TestRunnerStopCancelsProbe(t *testing.T) {
	clk := newFakeClock()
	p := &fakeProber{block: true, started: make(chan struct{}, 1), ctxErr: make(chan error, 1)}
	var reported atomic.Bool
	r := newRunner(clk, time.Second, time.Hour, p, func(result) { reported.Store(true) })
	r.start()
	clk.waitPending(t, 1)
	clk.Advance(time.Second)
	<-p.started
	r.stop()
	if err := <-p.ctxErr; err != context.Canceled {
		t.Errorf("probe context ended with %v, want Canceled", err)
	}
	if reported.Load() {
		t.Error("a run cancelled by stop was reported")
	}
}

func TestRunnerTimeout(t *testing.T) {
	clk := newFakeClock()
	p := &fakeProber{block: true, started: make(chan struct{}, 1), ctxErr: make(chan error, 1)}
	reported := make(chan struct{}, 1)
	r := newRunner(clk, time.Second, 20*time.Millisecond, p, func(result) { reported <- struct{}{} })
	r.start()
	defer r.stop()
	clk.waitPending(t, 1)
	clk.Advance(time.Second)
	<-p.started
	if err := <-p.ctxErr; err != context.DeadlineExceeded {
		t.Errorf("probe context ended with %v, want DeadlineExceeded", err)
	}
	<-reported
}

func TestRandomStagger(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		d := randomStagger(time.Second)
		if d < 0 || d >= time.Second {
			t.Fatalf("stagger %v outside [0, 1s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct staggers in 100 draws", len(seen))
	}
	if randomStagger(0) != 0 {
		t.Error("stagger of 0")
	}
}

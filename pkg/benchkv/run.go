package benchkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Phase is the stage of a run that a Snapshot describes.
type Phase string

const (
	PhasePreload Phase = "preload"
	PhaseWarmup  Phase = "warm-up"
	PhaseMeasure Phase = "measure"
)

// Snapshot is the progress of a run, reported every Config.ProgressInterval.
type Snapshot struct {
	Phase Phase
	// Elapsed is the time since the phase started; Total is the phase's planned length
	// (0 for preload, which ends when every key is written).
	Elapsed, Total time.Duration
	// Ops and Errors count operations completed so far, warm-up included (preload
	// counts its own).
	Ops, Errors uint64
	// Rate is successful operations per second since the previous snapshot.
	Rate float64
}

// Operation indexes into per-op counters.
const (
	opPut = 0
	opGet = 1
)

// stopGrace is how long Run waits past the end of the run for answers.
const stopGrace = 10 * time.Second

// maxErrorSamples bounds the distinct error messages a Result keeps.
const maxErrorSamples = 5

// worker is the state of one load goroutine. Only its goroutine writes the histograms
// and samples; the atomics are read by the progress reporter.
type worker struct {
	put, get   *Histogram
	ops, errs  atomic.Uint64
	misses     uint64    // measured reads of missing keys
	errCount   [2]uint64 // measured errors by op: opPut, opGet
	samples    []string
	lastErrMsg string
	value      []byte
	rng        *rand.Rand
	_          [64]byte // keeps the counters of neighbouring workers off one cache line
}

func (w *worker) noteError(err error) {
	msg := err.Error()
	if msg == w.lastErrMsg {
		return
	}
	w.lastErrMsg = msg
	for _, s := range w.samples {
		if s == msg {
			return
		}
	}
	if len(w.samples) < maxErrorSamples {
		w.samples = append(w.samples, msg)
	}
}

// Run executes the workload of cfg against d and returns its statistics. progress, if
// not nil, is called every cfg.ProgressInterval and at the end of each phase, from one
// goroutine at a time, and must return quickly. Run stops early when ctx ends; it then
// returns what it measured so far together with ctx's error. Errors of individual
// operations do not stop the run; they are counted in the Result. A failed preload
// does stop it.
//
// The load is a closed loop: a worker sends its next request when the previous one is
// answered, so a slow store is offered less load, and latency figures do not include
// time that requests would have waited in a queue under a fixed arrival rate.
func Run(ctx context.Context, cfg Config, d Driver, progress func(Snapshot)) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	keys := cfg.Keys()
	if cfg.Preload && cfg.Workload.reads() {
		if err := preload(ctx, cfg, d, keys, progress); err != nil {
			return Result{}, err
		}
	}

	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		w := &worker{
			put:   NewHistogram(),
			get:   NewHistogram(),
			value: make([]byte, cfg.ValueSize),
			rng:   rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
		}
		fillValue(w.value, w.rng)
		workers[i] = w
	}

	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	var cpuStart cpuTime
	var cpuOnce sync.Once
	markMeasureStart := func() { cpuOnce.Do(func() { cpuStart = processCPU() }) }
	if cfg.Warmup == 0 {
		markMeasureStart()
	}

	// Operations still unanswered stopGrace after the end are cancelled, so that a hung
	// store cannot hold the run open; they count as errors.
	opCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()
	hang := time.AfterFunc(time.Until(end)+stopGrace, cancelOps)
	defer hang.Stop()
	// Workers stop by end+stopGrace; the second of margin covers their last answers.
	stalls := newStallTracker(measureStart, cfg.Duration+stopGrace+time.Second)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(ctx, opCtx, cfg, d, keys, measureStart, end, stalls) })
	}
	stopReporter := startReporter(cfg.ProgressInterval, progress, workers, func(now time.Time) (Phase, time.Duration, time.Duration) {
		if now.Before(measureStart) {
			return PhaseWarmup, now.Sub(start), cfg.Warmup
		}
		return PhaseMeasure, now.Sub(measureStart), cfg.Duration
	})
	if cfg.Warmup > 0 {
		// The reporter may tick too rarely to catch the start of measuring.
		t := time.AfterFunc(time.Until(measureStart), markMeasureStart)
		defer t.Stop()
	}
	wg.Wait()
	stopReporter()
	finished := time.Now()
	markMeasureStart()
	cpu := processCPU().sub(cpuStart)

	elapsed := max(finished.Sub(measureStart), 0)
	r := newResult(cfg, workers, elapsed, cpu)
	r.LongestStall, r.LongestStallAt = stalls.longest(cfg.Duration, elapsed)
	r.StallResolution = stalls.resolution
	if err := ctx.Err(); err != nil {
		return r, err
	}
	return r, nil
}

// loop is one worker's closed loop: issue an operation, wait for it, repeat, until end.
// It takes one clock reading per operation: the end of one is the start of the next.
// Operations run under opCtx; an error while ctx (the caller's) is done is not counted.
// Every success is marked in stalls, warm-up ones too (stalls ignores them).
func (w *worker) loop(ctx, opCtx context.Context, cfg Config, d Driver, keys []string, measureStart, end time.Time, stalls *stallTracker) {
	now := time.Now()
	for now.Before(end) && opCtx.Err() == nil {
		key := keys[w.rng.IntN(len(keys))]
		read := cfg.Workload == WorkloadGet || (cfg.Workload == WorkloadMixed && w.rng.Float64() < cfg.ReadShare)
		var err error
		if read {
			err = d.Get(opCtx, key, cfg.ReadMode)
		} else {
			err = d.Put(opCtx, key, w.value)
		}
		done := time.Now()
		measured := !now.Before(measureStart)
		op := opPut
		if read {
			op = opGet
		}
		switch {
		case err == nil || (read && errors.Is(err, ErrNotFound)):
			w.ops.Add(1)
			stalls.mark(done)
			if measured {
				if read {
					w.get.Record(done.Sub(now))
					if err != nil {
						w.misses++
					}
				} else {
					w.put.Record(done.Sub(now))
				}
			}
		case ctx.Err() != nil:
			// Interrupted by the caller: not the store's failure.
		default:
			w.errs.Add(1)
			if measured {
				w.errCount[op]++
			}
			w.noteError(err)
		}
		now = done
	}
}

// preload writes every key once with PreloadConcurrency writers.
func preload(ctx context.Context, cfg Config, d Driver, keys []string, progress func(Snapshot)) error {
	slog.Debug("benchkv: preloading key space", "keys", len(keys), "writers", cfg.PreloadConcurrency)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	n := min(cfg.PreloadConcurrency, len(keys))
	workers := make([]*worker, n)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{value: make([]byte, cfg.ValueSize), rng: rand.New(rand.NewPCG(cfg.Seed, ^uint64(i)))}
		fillValue(w.value, w.rng)
		workers[i] = w
		wg.Go(func() {
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(len(keys)) {
					return
				}
				if err := d.Put(ctx, keys[k], w.value); err != nil {
					if ctx.Err() == nil {
						cancel(fmt.Errorf("preload of %s: %w", keys[k], err))
					}
					return
				}
				w.ops.Add(1)
			}
		})
	}
	start := time.Now()
	stop := startReporter(cfg.ProgressInterval, progress, workers, func(now time.Time) (Phase, time.Duration, time.Duration) {
		return PhasePreload, now.Sub(start), 0
	})
	wg.Wait()
	stop()
	return context.Cause(ctx)
}

// startReporter calls progress every interval with counts summed over workers, until
// the returned function is called; that function makes a last report and returns once
// progress is no longer being called.
func startReporter(interval time.Duration, progress func(Snapshot), workers []*worker, phase func(time.Time) (Phase, time.Duration, time.Duration)) func() {
	if progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		var lastOps uint64
		var activeRate float64 // of the last window in which operations completed
		last := time.Now()
		report := func(now time.Time, final bool) {
			var ops, errs uint64
			for _, w := range workers {
				ops += w.ops.Load()
				errs += w.errs.Load()
			}
			p, elapsed, total := phase(now)
			dt := now.Sub(last)
			rate := float64(ops-lastOps) / dt.Seconds()
			if ops > lastOps && dt >= interval/2 {
				activeRate = rate
			}
			// The final report comes after the workers stopped, possibly after ticks
			// that saw them idle or a sliver of time after the last tick: it shows the
			// rate of the last window that measured work (if there was one).
			if final && activeRate > 0 {
				rate = activeRate
			}
			lastOps, last = ops, now
			progress(Snapshot{Phase: p, Elapsed: elapsed, Total: total, Ops: ops, Errors: errs, Rate: rate})
		}
		for {
			select {
			case <-done:
				// A last report, so that the display ends on the final counts.
				report(time.Now(), true)
				return
			case now := <-t.C:
				report(now, false)
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// fillValue gives values random bytes, so that a store that compresses gains nothing.
func fillValue(b []byte, rng *rand.Rand) {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
}

package benchkv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memDriver is an in-memory store with optional failures.
type memDriver struct {
	mu      sync.Mutex
	data    map[string][]byte
	puts    atomic.Uint64
	gets    atomic.Uint64
	modes   sync.Map // ReadMode -> true
	putErr  error    // returned by every Put when set
	getErr  error    // returned by every Get when set
	onPut   func()   // called inside Put when set
	closeOK bool
}

var _ Driver = (*memDriver)(nil)

func newMemDriver() *memDriver { return &memDriver{data: map[string][]byte{}} }

func (d *memDriver) Put(_ context.Context, key string, value []byte) error {
	d.puts.Add(1)
	if d.onPut != nil {
		d.onPut()
	}
	if d.putErr != nil {
		return d.putErr
	}
	d.mu.Lock()
	d.data[key] = bytes.Clone(value)
	d.mu.Unlock()
	return nil
}

func (d *memDriver) Get(_ context.Context, key string, mode ReadMode) error {
	d.gets.Add(1)
	d.modes.Store(mode, true)
	if d.getErr != nil {
		return d.getErr
	}
	d.mu.Lock()
	_, ok := d.data[key]
	d.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	return nil
}

func (d *memDriver) Close() error { d.closeOK = true; return nil }

func testConfig(w Workload) Config {
	c := DefaultConfig()
	c.Workload = w
	c.Concurrency = 4
	c.Duration = 50 * time.Millisecond
	c.Warmup = 0
	c.KeyCount = 500
	c.ValueSize = 32
	c.ProgressInterval = 10 * time.Millisecond
	return c
}

func TestRun(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func() Config
		setup func(*memDriver)
		check func(t *testing.T, r Result, d *memDriver)
	}{
		{
			name: "put",
			cfg:  func() Config { return testConfig(WorkloadPut) },
			check: func(t *testing.T, r Result, d *memDriver) {
				if r.Put == nil || r.Get != nil || r.Put.Ops != r.Ops || d.gets.Load() != 0 {
					t.Errorf("put breakdown %+v get %+v, driver gets %d", r.Put, r.Get, d.gets.Load())
				}
				if r.ReadMode != "" {
					t.Errorf("a put workload reports read mode %q", r.ReadMode)
				}
				for k, v := range d.data {
					if !strings.HasPrefix(k, "wolke-bench/") || len(v) != 32 {
						t.Fatalf("stored %q with %d bytes", k, len(v))
					}
				}
			},
		},
		{
			name: "get preloads every key",
			cfg: func() Config {
				c := testConfig(WorkloadGet)
				c.ReadMode = ReadStale
				return c
			},
			check: func(t *testing.T, r Result, d *memDriver) {
				if len(d.data) != 500 || d.puts.Load() != 500 {
					t.Errorf("preload stored %d keys with %d puts, want 500", len(d.data), d.puts.Load())
				}
				if r.Misses != 0 || r.Get == nil || r.Put != nil || r.ReadMode != ReadStale {
					t.Errorf("misses %d, get %+v, put %+v, mode %q", r.Misses, r.Get, r.Put, r.ReadMode)
				}
				if _, ok := d.modes.Load(ReadStale); !ok {
					t.Errorf("driver never saw read mode stale")
				}
			},
		},
		{
			name: "get without preload misses",
			cfg: func() Config {
				c := testConfig(WorkloadGet)
				c.Preload = false
				return c
			},
			check: func(t *testing.T, r Result, d *memDriver) {
				if d.puts.Load() != 0 || r.Misses != r.Ops || r.Errors != 0 {
					t.Errorf("puts %d, misses %d of %d ops, errors %d", d.puts.Load(), r.Misses, r.Ops, r.Errors)
				}
			},
		},
		{
			name: "mixed follows the read share",
			cfg: func() Config {
				c := testConfig(WorkloadMixed)
				c.ReadShare = 0.75
				return c
			},
			check: func(t *testing.T, r Result, d *memDriver) {
				if r.Put == nil || r.Get == nil || r.Put.Ops+r.Get.Ops != r.Ops {
					t.Fatalf("breakdown put %+v get %+v total %d", r.Put, r.Get, r.Ops)
				}
				if share := float64(r.Get.Ops) / float64(r.Ops); r.Ops < 1000 || share < 0.7 || share > 0.8 {
					t.Errorf("read share %.3f over %d ops, want 0.75", share, r.Ops)
				}
			},
		},
		{
			name:  "failing puts are counted, not timed",
			cfg:   func() Config { return testConfig(WorkloadPut) },
			setup: func(d *memDriver) { d.putErr = errors.New("boom") },
			check: func(t *testing.T, r Result, d *memDriver) {
				if r.Ops != 0 || r.Errors == 0 || r.Put.Errors != r.Errors || r.Latency.Max != 0 {
					t.Errorf("ops %d errors %d put errors %d max %v", r.Ops, r.Errors, r.Put.Errors, r.Latency.Max)
				}
				if len(r.ErrorSamples) != 1 || r.ErrorSamples[0] != "boom" {
					t.Errorf("error samples %q, want [boom]", r.ErrorSamples)
				}
			},
		},
		{
			name: "warm-up is not measured",
			cfg: func() Config {
				c := testConfig(WorkloadPut)
				c.Warmup = 50 * time.Millisecond
				return c
			},
			check: func(t *testing.T, r Result, d *memDriver) {
				if r.Ops == 0 || r.Ops >= d.puts.Load() {
					t.Errorf("measured %d of %d puts, want some but not all", r.Ops, d.puts.Load())
				}
				if r.Duration < 50*time.Millisecond || r.Duration > time.Second {
					t.Errorf("measured duration %v, want about 50ms", r.Duration)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newMemDriver()
			if tt.setup != nil {
				tt.setup(d)
			}
			cfg := tt.cfg()
			r, err := Run(context.Background(), cfg, d, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.Errors == 0 && (r.Ops == 0 || r.OpsPerSec <= 0) {
				t.Fatalf("ops %d at %.0f/s", r.Ops, r.OpsPerSec)
			}
			if r.Concurrency != cfg.Concurrency || r.Workload != cfg.Workload || r.KeyCount != cfg.KeyCount {
				t.Errorf("result describes %+v, want the config's run", r)
			}
			l := r.Latency
			if r.Ops > 0 && !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Max > 0) {
				t.Errorf("latency not ordered: %+v", l)
			}
			tt.check(t, r, d)
		})
	}
}

func TestRunRejectsInvalidConfig(t *testing.T) {
	c := testConfig(WorkloadPut)
	c.Concurrency = 0
	d := newMemDriver()
	if _, err := Run(context.Background(), c, d, nil); err == nil || d.puts.Load() != 0 {
		t.Fatalf("Run = %v after %d puts, want a validation error and no traffic", err, d.puts.Load())
	}
}

func TestRunStopsOnPreloadFailure(t *testing.T) {
	d := newMemDriver()
	d.putErr = errors.New("disk full")
	_, err := Run(context.Background(), testConfig(WorkloadGet), d, nil)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "preload") {
		t.Fatalf("Run = %v, want the preload failure", err)
	}
	if d.gets.Load() != 0 {
		t.Errorf("%d gets after a failed preload", d.gets.Load())
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := newMemDriver()
	var once sync.Once
	d.onPut = func() {
		if d.puts.Load() > 100 {
			once.Do(cancel)
		}
	}
	c := testConfig(WorkloadPut)
	c.Duration = time.Minute
	start := time.Now()
	r, err := Run(ctx, c, d, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second || r.Ops == 0 || r.Errors != 0 {
		t.Errorf("after %v: %d ops, %d errors; want a prompt stop with partial figures and no errors", time.Since(start), r.Ops, r.Errors)
	}
}

func TestRunReportsProgress(t *testing.T) {
	c := testConfig(WorkloadGet)
	// Phases of many ticks each: a loaded machine may delay the reporter by tens of
	// milliseconds, and a phase shorter than that can pass unreported.
	c.Warmup = 150 * time.Millisecond
	c.Duration = 200 * time.Millisecond
	var mu sync.Mutex
	phases := map[Phase]int{}
	var last Snapshot
	_, err := Run(context.Background(), c, newMemDriver(), func(s Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		phases[s.Phase]++
		if s.Phase == PhaseMeasure && (s.Total != c.Duration || s.Ops < last.Ops) {
			t.Errorf("snapshot %+v after %+v", s, last)
		}
		last = s
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if phases[PhaseWarmup] == 0 || phases[PhaseMeasure] == 0 {
		t.Errorf("phases reported %v, want warm-up and measure", phases)
	}
	if last.Phase != PhaseMeasure || last.Ops == 0 || last.Rate <= 0 || !strings.Contains(last.ProgressLine(), "ops/s") {
		t.Errorf("last snapshot %+v: %q", last, last.ProgressLine())
	}
}

func TestOptionsExecute(t *testing.T) {
	tests := []struct {
		name    string
		format  Format
		putErr  error
		getErr  error
		wantErr string
		wantOut func(t *testing.T, out string)
	}{
		{name: "text", format: FormatText, wantOut: func(t *testing.T, out string) {
			for _, want := range []string{"etcd  put  c=4", "ops/s", "p99.9", "latency", "stall "} {
				if !strings.Contains(out, want) {
					t.Errorf("text output lacks %q:\n%s", want, out)
				}
			}
		}},
		{name: "json", format: FormatJSON, wantOut: func(t *testing.T, out string) {
			var r Result
			if err := json.Unmarshal([]byte(out), &r); err != nil || r.Ops == 0 || r.Label != "etcd" || r.Latency.P99 == 0 {
				t.Errorf("JSON %s: %v", out, err)
			}
			if !strings.Contains(out, `"p999_ns":`) || strings.Count(out, "\n") != 1 {
				t.Errorf("JSON is not one line with p999_ns: %s", out)
			}
		}},
		{name: "all failed", format: FormatText, putErr: errors.New("connection refused"), wantErr: "no operation succeeded; first error: connection refused",
			wantOut: func(t *testing.T, out string) {
				if !strings.Contains(out, "error    connection refused") {
					t.Errorf("output lacks the error sample:\n%s", out)
				}
			}},
		{name: "unreachable store fails before the run", format: FormatText, getErr: errors.New("connection refused"),
			wantErr: "store not usable: connection refused",
			wantOut: func(t *testing.T, out string) {
				if out != "" {
					t.Errorf("output %q, want none", out)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Config: testConfig(WorkloadPut), Format: tt.format}
			o.Config.Label = "etcd"
			d := newMemDriver()
			d.putErr, d.getErr = tt.putErr, tt.getErr
			var stdout, stderr bytes.Buffer
			err := o.Execute(context.Background(), d, &stdout, &stderr, true)
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("Execute = %v, want %q", err, tt.wantErr)
			}
			tt.wantOut(t, stdout.String())
			if tt.getErr == nil && !strings.Contains(stderr.String(), "\r") {
				t.Errorf("no live progress on stderr: %q", stderr.String())
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	rs := []Result{
		{Label: "wolke", Workload: WorkloadGet, ReadMode: ReadConsistent, Concurrency: 64, LongestStall: 1234 * time.Millisecond,
			OpStats: OpStats{OpsPerSec: 12345.4, Errors: 2, Latency: Latency{P50: 1500 * time.Microsecond, P99: 12 * time.Millisecond, P999: 2 * time.Second}}},
		{Label: "etcd", Workload: WorkloadPut, Concurrency: 1, OpStats: OpStats{OpsPerSec: 512, Latency: Latency{P50: 850 * time.Microsecond}}},
	}
	var b strings.Builder
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	want := `| system | workload | c | ops/s | p50 | p99 | p99.9 | errors | longest stall |
|---|---|--:|--:|--:|--:|--:|--:|--:|
| wolke | get (consistent) | 64 | 12345 | 1.50ms | 12.0ms | 2.00s | 2 | 1.23s |
| etcd | put | 1 | 512 | 850µs | 0.00µs | 0.00µs | 0 | 0.00µs |
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

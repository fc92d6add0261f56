package benchkv

import (
	"time"
)

// cpuTime is a reading of the process's CPU usage; ok is false where it is not measured.
type cpuTime struct {
	user, sys time.Duration
	ok        bool
}

// ProcessCPU is the user plus system CPU time this process has used so far (0 where
// the platform does not say), for load generators that report their own cost.
func ProcessCPU() time.Duration {
	c := processCPU()
	return c.user + c.sys
}

func (c cpuTime) sub(o cpuTime) cpuTime {
	if !c.ok || !o.ok {
		return cpuTime{}
	}
	return cpuTime{user: c.user - o.user, sys: c.sys - o.sys, ok: true}
}

// Latency summarises a latency distribution. Percentiles are accurate to 0.4% and never
// understated; Min, Max and Mean are exact.
type Latency struct {
	Min  time.Duration `json:"min_ns"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// LatencyOf summarises h.
func LatencyOf(h *Histogram) Latency {
	return Latency{
		Min:  h.Min(),
		Mean: h.Mean(),
		P50:  h.Quantile(0.50),
		P90:  h.Quantile(0.90),
		P99:  h.Quantile(0.99),
		P999: h.Quantile(0.999),
		Max:  h.Max(),
	}
}

// OpStats are the measured figures of one kind of operation.
type OpStats struct {
	// Ops counts successful operations (reads of missing keys included).
	Ops uint64 `json:"ops"`
	// Errors counts failed operations; they are not in the latency figures.
	Errors uint64 `json:"errors"`
	// Misses counts reads that found no value.
	Misses    uint64  `json:"misses,omitempty"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Latency   Latency `json:"latency"`
}

// Result is what a run measured: operations that started after the warm-up.
type Result struct {
	Label       string   `json:"label,omitempty"`
	Workload    Workload `json:"workload"`
	ReadMode    ReadMode `json:"read_mode,omitempty"`
	ReadShare   float64  `json:"read_share,omitempty"`
	Concurrency int      `json:"concurrency"`
	ValueSize   int      `json:"value_size"`
	KeyCount    int      `json:"key_count"`
	// Duration runs from the end of the warm-up until the last worker stopped.
	Duration time.Duration `json:"duration_ns"`

	// The totals over all operations.
	OpStats
	// Put and Get break the totals down by operation, for the operations that ran.
	Put *OpStats `json:"put,omitempty"`
	Get *OpStats `json:"get,omitempty"`

	// LongestStall is the longest interval of the measured run in which no operation
	// succeeded, across all workers: during a leader failover, the time from the last
	// write before it to the first one after. LongestStallAt is when it began, from the
	// start of measuring; a stall that begins after the workers stopped issuing (the
	// last answers trickling in) is not counted. Both are accurate to StallResolution (100µs unless
	// the run is longer than about 14 minutes); LongestStall is 0 when every interval
	// of that width saw a success. See stall.go.
	LongestStall    time.Duration `json:"longest_stall_ns"`
	LongestStallAt  time.Duration `json:"longest_stall_at_ns"`
	StallResolution time.Duration `json:"stall_resolution_ns,omitempty"`

	// ErrorSamples holds up to 5 distinct error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`

	// ClientCPU is the CPU time (user + system) the benchmarking process used while
	// measuring, and ClientCPUPerOp that time per successful operation; both 0 where
	// not measured.
	ClientCPU      time.Duration `json:"client_cpu_ns,omitempty"`
	ClientCPUPerOp time.Duration `json:"client_cpu_per_op_ns,omitempty"`
}

func newResult(cfg Config, workers []*worker, elapsed time.Duration, cpu cpuTime) Result {
	r := Result{
		Label:       cfg.Label,
		Workload:    cfg.Workload,
		Concurrency: cfg.Concurrency,
		ValueSize:   cfg.ValueSize,
		KeyCount:    cfg.KeyCount,
		Duration:    elapsed,
	}
	if cfg.Workload.reads() {
		r.ReadMode = cfg.ReadMode
	}
	if cfg.Workload == WorkloadMixed {
		r.ReadShare = cfg.ReadShare
	}
	all, put, get := NewHistogram(), NewHistogram(), NewHistogram()
	var errs [2]uint64
	var misses uint64
	seen := map[string]bool{}
	for _, w := range workers {
		put.Merge(w.put)
		get.Merge(w.get)
		errs[opPut] += w.errCount[opPut]
		errs[opGet] += w.errCount[opGet]
		misses += w.misses
		for _, s := range w.samples {
			if !seen[s] && len(r.ErrorSamples) < maxErrorSamples {
				seen[s] = true
				r.ErrorSamples = append(r.ErrorSamples, s)
			}
		}
	}
	all.Merge(put)
	all.Merge(get)
	stats := func(h *Histogram, errs, misses uint64) OpStats {
		s := OpStats{Ops: h.Count(), Errors: errs, Misses: misses, Latency: LatencyOf(h)}
		if elapsed > 0 {
			s.OpsPerSec = float64(s.Ops) / elapsed.Seconds()
		}
		return s
	}
	r.OpStats = stats(all, errs[opPut]+errs[opGet], misses)
	if cfg.Workload != WorkloadGet {
		s := stats(put, errs[opPut], 0)
		r.Put = &s
	}
	if cfg.Workload.reads() {
		s := stats(get, errs[opGet], misses)
		r.Get = &s
	}
	if cpu.ok {
		r.ClientCPU = cpu.user + cpu.sys
		if r.Ops > 0 {
			r.ClientCPUPerOp = r.ClientCPU / time.Duration(r.Ops)
		}
	}
	return r
}

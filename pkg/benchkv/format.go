package benchkv

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Format is an output format for results.
type Format string

const (
	// FormatText is a few aligned lines for people.
	FormatText Format = "text"
	// FormatJSON is one JSON object per result, on one line, with durations in
	// nanoseconds, for scripts.
	FormatJSON Format = "json"
)

func (f Format) String() string { return string(f) }

// MarshalText and UnmarshalText let a Format be a flag (flag.TextVar).
func (f Format) MarshalText() ([]byte, error) { return []byte(f), nil }

// UnmarshalText accepts text or json.
func (f *Format) UnmarshalText(b []byte) error {
	switch v := Format(strings.ToLower(string(b))); v {
	case FormatText, FormatJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("format %q: want text or json", b)
}

// Write writes r to w in format f.
func (r Result) Write(w io.Writer, f Format) error {
	if f == FormatJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	_, err := io.WriteString(w, r.Text())
	return err
}

// Text renders r for people, for example:
//
//	etcd  put  c=64  value 256 B  10000 keys  10.00s
//	ops      123456 ok  12345.6 ops/s  0 errors
//	latency  p50 1.23ms  p90 2.10ms  p99 5.30ms  p99.9 9.10ms  max 12.0ms  mean 1.40ms
//	stall    longest 13.2ms at 4.51s
//	client   cpu 2.10s  17.0µs/op
func (r Result) Text() string {
	var b strings.Builder
	head := []string{}
	if r.Label != "" {
		head = append(head, r.Label)
	}
	head = append(head, r.describeWorkload(), "c="+strconv.Itoa(r.Concurrency),
		fmt.Sprintf("value %d B", r.ValueSize), fmt.Sprintf("%d keys", r.KeyCount),
		fmt.Sprintf("%.2fs", r.Duration.Seconds()))
	b.WriteString(strings.Join(head, "  "))
	b.WriteByte('\n')
	writeStats := func(name string, s OpStats) {
		fmt.Fprintf(&b, "%-8s %d ok  %.1f ops/s  %d errors", name, s.Ops, s.OpsPerSec, s.Errors)
		if s.Misses > 0 {
			fmt.Fprintf(&b, "  %d not found", s.Misses)
		}
		b.WriteByte('\n')
		l := s.Latency
		fmt.Fprintf(&b, "%-8s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n", "latency",
			FormatLatency(l.P50), FormatLatency(l.P90), FormatLatency(l.P99),
			FormatLatency(l.P999), FormatLatency(l.Max), FormatLatency(l.Mean))
	}
	writeStats("ops", r.OpStats)
	if r.Put != nil && r.Get != nil {
		writeStats("put", *r.Put)
		writeStats("get", *r.Get)
	}
	switch {
	case r.LongestStall > 0:
		fmt.Fprintf(&b, "%-8s longest %s at %s\n", "stall", FormatLatency(r.LongestStall), FormatLatency(r.LongestStallAt))
	case r.StallResolution > 0:
		fmt.Fprintf(&b, "%-8s none longer than %s\n", "stall", FormatLatency(r.StallResolution))
	}
	if r.ClientCPU > 0 {
		fmt.Fprintf(&b, "%-8s cpu %.2fs  %s/op\n", "client", r.ClientCPU.Seconds(), FormatLatency(r.ClientCPUPerOp))
	}
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(&b, "%-8s %s\n", "error", s)
	}
	return b.String()
}

func (r Result) describeWorkload() string {
	switch r.Workload {
	case WorkloadGet:
		return "get (" + string(r.ReadMode) + ")"
	case WorkloadMixed:
		return fmt.Sprintf("mixed (%.0f%% get %s)", r.ReadShare*100, r.ReadMode)
	}
	return string(r.Workload)
}

// FormatLatency renders d with three significant digits in µs, ms or s.
func FormatLatency(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 1000:
		return strconv.FormatFloat(us, 'f', digitsAfterPoint(us), 64) + "µs"
	case us < 1e6:
		ms := us / 1000
		return strconv.FormatFloat(ms, 'f', digitsAfterPoint(ms), 64) + "ms"
	}
	s := us / 1e6
	return strconv.FormatFloat(s, 'f', digitsAfterPoint(s), 64) + "s"
}

func digitsAfterPoint(v float64) int {
	switch {
	case v < 10:
		return 2
	case v < 100:
		return 1
	}
	return 0
}

// WriteTable writes results as a markdown table with one row per result, in order:
// system (the label), workload, concurrency, ops/s, p50, p99, p99.9, errors and the
// longest stall.
func WriteTable(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| system | workload | c | ops/s | p50 | p99 | p99.9 | errors | longest stall |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s | %s | %s | %d | %s |\n",
			r.Label, r.describeWorkload(), r.Concurrency, r.OpsPerSec,
			FormatLatency(r.Latency.P50), FormatLatency(r.Latency.P99), FormatLatency(r.Latency.P999), r.Errors,
			FormatLatency(r.LongestStall))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ProgressLine renders s as one short line for a terminal status display.
func (s Snapshot) ProgressLine() string {
	elapsed := fmt.Sprintf("%.0fs", s.Elapsed.Seconds())
	if s.Total > 0 {
		elapsed += fmt.Sprintf("/%.0fs", s.Total.Seconds())
	}
	return fmt.Sprintf("%-8s %-9s %10d ops %10.0f ops/s %6d errors", s.Phase, elapsed, s.Ops, s.Rate, s.Errors)
}

// MedianRounds reduces repeated rounds of the same benchmark (same label, workload and
// concurrency) to the round with the median throughput, in the order each benchmark
// first appears; an even number of rounds gives the lower middle one. The latencies
// shown are that round's own, so each row is one real run, not a blend of several.
func MedianRounds(results []Result) []Result {
	type group struct{ rounds []Result }
	var order []string
	groups := map[string]*group{}
	for _, r := range results {
		k := fmt.Sprintf("%s\x00%s\x00%d", r.Label, r.describeWorkload(), r.Concurrency)
		g, ok := groups[k]
		if !ok {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.rounds = append(g.rounds, r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		rs := groups[k].rounds
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].OpsPerSec < rs[j].OpsPerSec })
		out = append(out, rs[(len(rs)-1)/2])
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/gossipsim"
)

func init() { subcommands = append(subcommands, newGossipCmd) }

func newGossipCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip",
		Short: "Predict and measure how fast gossip spreads through a pool",
		Args:  noArgs,
	}
	cmd.AddCommand(newGossipSimulateCmd())
	return cmd
}

// noArgs refuses positional arguments as bad input (exit code 2), which cobra.NoArgs
// would report as a failure (exit code 1).
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unexpected argument %q", args[0])
	}
	return nil
}

// Bounds on the work one command line can ask for.
const (
	maxSimRuns      = 100_000
	maxMeasureTrial = 1000
)

type gossipSimulateOpts struct {
	params  gossipsim.Params
	runs    int
	trials  int
	seed    uint64
	measure bool
	format  string
	plot    string
	verbose bool
}

func newGossipSimulateCmd() *cobra.Command {
	o := gossipSimulateOpts{params: gossipsim.DefaultParams(), runs: 100, trials: 5, seed: 1, format: "text"}
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Time until a broadcast reaches 50 … 100 % of the pool: model, simulation, measurement",
		Long: `Answers "how long until every node has heard it?" for the agent's gossip settings
(memberlist's LAN defaults: 200ms interval, 3 peers per round, retransmit mult 4), three ways:

  model        Serf's closed-form mean-field curve: n / (1 + (n+1)·e^(−c·rounds)),
               c = ½·fanout·(1−loss)·(1−failed). Instant; optimistic early, pessimistic late.
  simulation   a seeded Monte-Carlo of memberlist's dissemination: staggered gossip ticks,
               fanout random peers, at most retransmit-mult·⌈log10(n+1)⌉ transmissions per node.
  measurement  (-measure) real memberlist instances on 127.0.0.1 behind a lossy transport,
               timing one broadcast per trial.

It prints the time until 50 %, 90 %, 99 %, 99.99 % and 100 % of the live nodes have the
broadcast (median over runs, 95th percentile in brackets) and the bandwidth per node.
-loss and -failed are fractions (0.1 = 10 %); failed nodes are crashed but not yet detected,
so peers still waste packets on them.`,
		Example: `  wolke gossip simulate -nodes 1000
  wolke gossip simulate -nodes 50 -loss 0.1 -measure -plot gossip.png
  wolke gossip simulate -nodes 100000 -runs 100 -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	p := &o.params
	f.IntVar(&p.Nodes, "nodes", p.Nodes, "nodes in the pool, failed ones included")
	f.DurationVar(&p.Interval, "interval", p.Interval, "gossip interval (memberlist GossipInterval)")
	f.IntVar(&p.Fanout, "fanout", p.Fanout, "peers per gossip round (memberlist GossipNodes)")
	f.IntVar(&p.RetransmitMult, "retransmit-mult", p.RetransmitMult, "memberlist RetransmitMult: a node passes a broadcast on at most mult·⌈log10(n+1)⌉ times")
	f.Float64Var(&p.Loss, "loss", 0, "probability that a packet is lost, a fraction in [0, 1)")
	f.Float64Var(&p.Failed, "failed", 0, "share of nodes crashed but not yet detected, a fraction in [0, 1)")
	f.IntVar(&o.runs, "runs", o.runs, "simulation runs")
	f.Uint64Var(&o.seed, "seed", o.seed, "random seed of the simulation and of the measurement's choice of senders")
	f.BoolVar(&o.measure, "measure", false, "also measure a pool of real memberlist instances on 127.0.0.1")
	f.IntVar(&o.trials, "trials", o.trials, "broadcasts timed by -measure")
	f.StringVar(&o.format, "format", o.format, "output format: text or json")
	f.StringVar(&o.plot, "plot", "", "draw the convergence curves to this .png or .svg file")
	f.BoolVar(&o.verbose, "verbose", false, "log the measurement's progress to stderr")
	return cmd
}

func (o *gossipSimulateOpts) validate() error {
	if err := o.params.Validate(); err != nil {
		var pe *gossipsim.ParamError
		if errors.As(err, &pe) {
			return usageErrorf("invalid -%s %v: %s", pe.Param, pe.Value, pe.Reason)
		}
		return usageErrorf("%v", err)
	}
	switch {
	case o.runs < 1 || o.runs > maxSimRuns:
		return usageErrorf("invalid -runs %d: must be between 1 and %d", o.runs, maxSimRuns)
	case o.format != "text" && o.format != "json":
		return usageErrorf("invalid -format %q: must be text or json", o.format)
	}
	if o.plot != "" {
		if _, err := gossipsim.PlotFormat(o.plot); err != nil {
			return usageErrorf("invalid -plot %q: the file name must end in .png or .svg", o.plot)
		}
	}
	if o.measure {
		switch {
		case o.params.Nodes < 2 || o.params.Nodes > gossipsim.MaxMeasureNodes:
			return usageErrorf("invalid -nodes %d with -measure: a measurement needs between 2 and %d nodes",
				o.params.Nodes, gossipsim.MaxMeasureNodes)
		case o.trials < 1 || o.trials > maxMeasureTrial:
			return usageErrorf("invalid -trials %d: must be between 1 and %d", o.trials, maxMeasureTrial)
		}
	}
	return nil
}

func (o *gossipSimulateOpts) run(ctx context.Context, stdout, stderr io.Writer) error {
	model, err := gossipsim.Model(o.params)
	if err != nil {
		return err
	}
	sim, err := gossipsim.Simulate(ctx, o.params, gossipsim.SimConfig{Runs: o.runs, Seed: o.seed})
	if err != nil {
		return err
	}
	results := []gossipsim.Result{model, sim}
	if o.measure {
		level := slog.LevelWarn
		if o.verbose {
			level = slog.LevelInfo
		}
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		m, err := gossipsim.Measure(ctx, o.params, gossipsim.MeasureConfig{
			Trials: o.trials, Seed: o.seed, Logger: logger.With("component", "gossipsim"),
		})
		if err != nil {
			return err
		}
		results = append(results, m)
	}
	if o.plot != "" {
		if err := writePlotFile(o.plot, results); err != nil {
			return err
		}
	}
	if o.format == "json" {
		return writeGossipJSON(stdout, o.params, results)
	}
	return writeGossipText(stdout, o.params, results)
}

func writePlotFile(path string, results []gossipsim.Result) (err error) {
	format, err := gossipsim.PlotFormat(path)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return gossipsim.WritePlot(f, format, results...)
}

func fmtSeconds(d time.Duration) string {
	if d == gossipsim.Never {
		return "never"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// fmtElapsed keeps three significant digits, so a 300µs simulation does not read "0s".
func fmtElapsed(d time.Duration) string {
	for unit := time.Nanosecond; unit < time.Hour; unit *= 10 {
		if d < 1000*unit {
			return d.Round(unit).String()
		}
	}
	return d.Round(time.Second).String()
}

func fmtPercent(share float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%g", share*100), ".0") + "%"
}

func fmtBytes(perSec float64) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.1f MB/s", perSec/1e6)
	case perSec >= 1e3:
		return fmt.Sprintf("%.1f kB/s", perSec/1e3)
	}
	return fmt.Sprintf("%.0f B/s", perSec)
}

func writeGossipText(w io.Writer, p gossipsim.Params, results []gossipsim.Result) error {
	live := results[0].Live
	fmt.Fprintf(w, "gossip convergence for %d nodes (%d live): interval %v, fanout %d, loss %g %%, failed %g %%\n",
		p.Nodes, live, p.Interval, p.Fanout, p.Loss*100, p.Failed*100)
	fmt.Fprintf(w, "each node passes a broadcast on at most %d times (retransmit mult %d × ⌈log10(%d)⌉)\n\n",
		p.RetransmitLimit(), p.RetransmitMult, p.Nodes+1)
	fmt.Fprintln(w, "time until this share of live nodes has the broadcast (median, 95th percentile in brackets):")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "method\truns")
	for _, s := range gossipsim.Shares() {
		fmt.Fprintf(tw, "\t%s", fmtPercent(s))
	}
	fmt.Fprintln(tw, "\tbandwidth per node")
	for _, r := range results {
		runs := fmt.Sprint(r.Runs)
		if r.Method == gossipsim.MethodModel {
			runs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s", r.Method, runs)
		for _, l := range r.Levels {
			if r.Method == gossipsim.MethodModel {
				fmt.Fprintf(tw, "\t%s", fmtSeconds(l.Median))
			} else {
				fmt.Fprintf(tw, "\t%s (%s)", fmtSeconds(l.Median), fmtSeconds(l.P95))
			}
		}
		fmt.Fprintf(tw, "\t%s, %.1f packets/s\n", fmtBytes(r.Bandwidth), r.Packets)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, r := range results {
		switch r.Method {
		case gossipsim.MethodModel:
			fmt.Fprintf(w, "model: Serf's mean-field formula in whole rounds. It assumes aligned rounds and no retransmit limit, so it is slower than memberlist's staggered ticks and never misses a node; its bandwidth is Serf's ceiling, a full %d-byte packet in every gossip slot, in and out.\n", p.PacketBytes)
		case gossipsim.MethodSimulation:
			fmt.Fprintf(w, "simulation: %d runs in %v; bandwidth counts the gossip packets sent and received until everyone had it, as full %d-byte packets.\n",
				r.Runs, fmtElapsed(r.Elapsed), p.PacketBytes)
		case gossipsim.MethodMeasurement:
			fmt.Fprintf(w, "measurement: %d memberlist nodes on 127.0.0.1 started in %v, holding %.1f MB in %d goroutines; %d trials in %v; bandwidth is the real traffic, probes included.\n",
				p.Nodes, fmtElapsed(r.Setup), float64(r.MemoryBytes)/1e6, r.Goroutines, r.Runs, fmtElapsed(r.Elapsed))
		}
		if r.Incomplete > 0 {
			fmt.Fprintf(w, "%s: in %d of %d runs some live node never got the broadcast: every holder had spent its %d transmissions. Only the next push/pull (every 30s, longer in large pools) repairs that, for membership changes and Serf's events.\n",
				r.Method, r.Incomplete, r.Runs, p.RetransmitLimit())
		}
	}
	return nil
}

// The JSON form gives times in seconds and null for a share never reached.

type gossipJSON struct {
	Params  gossipParamsJSON   `json:"params"`
	Results []gossipResultJSON `json:"results"`
}

type gossipParamsJSON struct {
	Nodes           int     `json:"nodes"`
	Live            int     `json:"live"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Fanout          int     `json:"fanout"`
	RetransmitMult  int     `json:"retransmit_mult"`
	RetransmitLimit int     `json:"retransmit_limit"`
	Loss            float64 `json:"loss"`
	Failed          float64 `json:"failed"`
	PacketBytes     int     `json:"packet_bytes"`
}

type gossipLevelJSON struct {
	Share         float64  `json:"share"`
	MedianSeconds *float64 `json:"median_seconds"`
	P95Seconds    *float64 `json:"p95_seconds"`
}

type gossipPointJSON struct {
	Seconds float64 `json:"seconds"`
	Share   float64 `json:"share"`
}

type gossipResultJSON struct {
	Method         string            `json:"method"`
	Runs           int               `json:"runs"`
	Incomplete     int               `json:"incomplete_runs"`
	Levels         []gossipLevelJSON `json:"levels"`
	BandwidthBytes float64           `json:"bandwidth_bytes_per_second"`
	Packets        float64           `json:"packets_per_second"`
	ElapsedSeconds float64           `json:"elapsed_seconds"`
	SetupSeconds   float64           `json:"setup_seconds,omitempty"`
	MemoryBytes    uint64            `json:"memory_bytes,omitempty"`
	Goroutines     int               `json:"goroutines,omitempty"`
	Curve          []gossipPointJSON `json:"curve"`
}

func secondsOrNull(d time.Duration) *float64 {
	if d == gossipsim.Never {
		return nil
	}
	s := d.Seconds()
	return &s
}

func writeGossipJSON(w io.Writer, p gossipsim.Params, results []gossipsim.Result) error {
	out := gossipJSON{Params: gossipParamsJSON{
		Nodes: p.Nodes, Live: results[0].Live, IntervalSeconds: p.Interval.Seconds(), Fanout: p.Fanout,
		RetransmitMult: p.RetransmitMult, RetransmitLimit: p.RetransmitLimit(),
		Loss: p.Loss, Failed: p.Failed, PacketBytes: p.PacketBytes,
	}}
	for _, r := range results {
		rj := gossipResultJSON{
			Method: string(r.Method), Runs: r.Runs, Incomplete: r.Incomplete,
			BandwidthBytes: math.Round(r.Bandwidth), Packets: r.Packets,
			ElapsedSeconds: r.Elapsed.Seconds(), SetupSeconds: r.Setup.Seconds(),
			MemoryBytes: r.MemoryBytes, Goroutines: r.Goroutines,
		}
		for _, l := range r.Levels {
			rj.Levels = append(rj.Levels, gossipLevelJSON{Share: l.Share,
				MedianSeconds: secondsOrNull(l.Median), P95Seconds: secondsOrNull(l.P95)})
		}
		for _, pt := range r.Curve {
			rj.Curve = append(rj.Curve, gossipPointJSON{Seconds: pt.T.Seconds(), Share: pt.Share})
		}
		out.Results = append(out.Results, rj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

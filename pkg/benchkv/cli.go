package benchkv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Options are the command-line settings shared by every `bench kv` front end (wolke's
// own for Consul's HTTP API, and the etcd one in the separate bench module), so that
// both take the same flags and print the same output. The address of the store is the
// front end's own flag.
type Options struct {
	Config Config
	Format Format
}

// DefaultOptions returns DefaultConfig and text output.
func DefaultOptions() Options {
	return Options{Config: DefaultConfig(), Format: FormatText}
}

// Register defines the flags on fs, with o's current values as defaults. A Go FlagSet
// takes -name and --name alike; cobra commands add it with pflag's AddGoFlagSet, which
// keeps -c and -d working as one-letter flags.
func (o *Options) Register(fs *flag.FlagSet) {
	c := &o.Config
	fs.TextVar(&c.Workload, "workload", c.Workload, "operations to run: `put|get|mixed`")
	fs.Float64Var(&c.ReadShare, "read-share", c.ReadShare, "share of reads in the mixed workload, 0 to 1")
	fs.IntVar(&c.Concurrency, "c", c.Concurrency, "concurrent workers, each with one request in flight")
	fs.DurationVar(&c.Duration, "d", c.Duration, "how long to measure, after the warm-up")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "unmeasured run before measuring")
	fs.IntVar(&c.ValueSize, "value-size", c.ValueSize, "size of written values in bytes")
	fs.IntVar(&c.KeyCount, "keys", c.KeyCount, "number of distinct keys")
	fs.StringVar(&c.KeyPrefix, "prefix", c.KeyPrefix, "prefix of every key")
	fs.TextVar(&c.ReadMode, "read-mode", c.ReadMode, "read consistency: `default|consistent|stale`")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the key and operation sequence")
	fs.BoolVar(&c.Preload, "preload", c.Preload, "write every key once before a workload that reads")
	fs.IntVar(&c.PreloadConcurrency, "preload-c", c.PreloadConcurrency, "concurrent writers of the preload")
	fs.StringVar(&c.Label, "label", c.Label, "name of the system under test in the output")
	fs.TextVar(&o.Format, "format", o.Format, "output format: `text|json`")
}

// Validate checks the options; the message has one line per problem.
func (o Options) Validate() error {
	var f Format
	return errors.Join(o.Config.Validate(), f.UnmarshalText([]byte(o.Format)))
}

// Execute runs the benchmark against d and writes the result to stdout. With live set it
// keeps a progress line, rewritten in place, on stderr (meant for a terminal). It returns
// an error when a first probing read fails, when the run was interrupted (after writing
// what was measured) or when no operation succeeded.
func (o Options) Execute(ctx context.Context, d Driver, stdout, stderr io.Writer, live bool) error {
	var progress func(Snapshot)
	width := 0
	if live {
		progress = func(s Snapshot) {
			line := s.ProgressLine()
			width = max(width, len(line))
			fmt.Fprintf(stderr, "\r%-*s", width, line)
		}
	}
	// One read first, so that an unreachable store fails at once instead of after a
	// full run of connection errors.
	probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
	err := d.Get(probeCtx, o.Config.KeyPrefix+"probe", o.Config.ReadMode)
	cancel()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("store not usable: %w", err)
	}
	r, err := Run(ctx, o.Config, d, progress)
	if width > 0 {
		fmt.Fprintf(stderr, "\r%s\r", strings.Repeat(" ", width))
	}
	if r.Workload == "" { // nothing was measured: preload or validation failed
		return err
	}
	if werr := r.Write(stdout, o.Format); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("interrupted after %.1fs of measuring: %w", r.Duration.Seconds(), err)
	}
	if r.Ops == 0 && r.Errors > 0 {
		return fmt.Errorf("no operation succeeded; first error: %s", r.ErrorSamples[0])
	}
	return nil
}

// probeTimeout bounds the first read; clients that wait for a connection (gRPC) would
// otherwise wait forever for a store that is not there.
const probeTimeout = 10 * time.Second

// IsTerminal reports whether f is a character device, which is what a progress line
// needs; it avoids a dependency for the one question.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

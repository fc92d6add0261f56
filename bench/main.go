// Command bench runs wolke's KV benchmark against etcd, so that wolke and etcd can be
// compared within one run with the same workload and statistics. It is a module of its
// own so that the wolke binary does not carry the etcd client.
//
//	go run . kv -endpoints 127.0.0.1:2379 -workload put -c 64 -d 10s
//	go run . table results.jsonl
//
// kv takes the flags of `wolke bench kv`, with -endpoints and -conns in place of
// -http-addr, and prints the same output. table turns results printed with -format json
// into a markdown table.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

const usage = `usage: bench kv [flags]      load etcd's KV API (bench kv -h for flags)
       bench table [-median] [file...]
                              markdown table of JSON results (stdin without files);
                              -median: one row per benchmark, its median round by ops/s`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "kv":
		err = runKV(ctx, args[1:], stdout, stderr)
	case "table":
		median := len(args) > 1 && args[1] == "-median"
		files := args[1:]
		if median {
			files = args[2:]
		}
		err = runTable(files, median, stdin, stdout)
	default:
		err = usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(stderr, "error:", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// usageError is bad command-line input: exit code 2, as for wolke.
type usageError struct{ error }

func runKV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts := benchkv.DefaultOptions()
	fs := flag.NewFlagSet("bench kv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts.Register(fs)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "etcd client endpoints, comma-separated")
	conns := fs.Int("conns", 1, "gRPC connections, shared round-robin by the workers")
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "timeout of connecting to etcd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if err := opts.Validate(); err != nil {
		return usageError{errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))}
	}
	if *conns < 1 || *conns > opts.Config.Concurrency+opts.Config.PreloadConcurrency {
		return usageError{fmt.Errorf("conns %d: want 1 to the number of workers", *conns)}
	}
	eps := strings.Split(*endpoints, ",")
	d, err := newEtcdKV(eps, *conns, *dialTimeout)
	if err != nil {
		return err
	}
	defer d.Close()
	live := stderr == os.Stderr && benchkv.IsTerminal(os.Stderr)
	return opts.Execute(ctx, d, stdout, stderr, live)
}

// runTable reads results, one JSON object per line, and prints them as one table.
func runTable(files []string, median bool, stdin io.Reader, stdout io.Writer) error {
	var results []benchkv.Result
	read := func(name string, r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			var res benchkv.Result
			if err := json.Unmarshal([]byte(text), &res); err != nil {
				return fmt.Errorf("%s:%d: %w", name, line, err)
			}
			results = append(results, res)
		}
		return sc.Err()
	}
	if len(files) == 0 {
		if err := read("stdin", stdin); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = read(name, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if median {
		results = benchkv.MedianRounds(results)
	}
	return benchkv.WriteTable(stdout, results)
}

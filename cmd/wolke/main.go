// Command wolke is the single binary of the wolke platform: the agent (store, membership,
// discovery, gateway) and the CLI that talks to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

// exitError carries a process exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports bad command-line input; the process exits with code 2 like flag parsing errors.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	args = normalizeArgs(root, args)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wolke",
		Short: "wolke: the platform micro-services need around them, in one binary",
		Long: `wolke runs a Raft-replicated coordination store that speaks Consul's HTTP API,
and the CLI to use it. Flags take one or two dashes (-dev or --dev). Every flag of
'wolke agent', and -http-addr and -token of every command, can also be set through an
environment variable WOLKE_<FLAG> (for -http-addr: WOLKE_HTTP_ADDR).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: 2, err: err}
	})
	root.AddCommand(newVersionCmd())
	for _, c := range subcommands {
		root.AddCommand(c())
	}
	return root
}

// subcommands holds the constructors of the top-level commands; each command's file adds
// itself in an init function so that the commands stay independent of each other.
var subcommands []func() *cobra.Command

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the wolke version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "wolke %s\n", Version)
			return nil
		},
	}
}

// normalizeArgs lets flags be written Consul's way, with one dash (-http-addr), by
// rewriting "-name" to "--name" when the command being run defines a long flag "name".
// Arguments after "--" (a child command line) are left alone.
func normalizeArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		cmd = root
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(a) >= 2 && a[0] == '-' && a[1] != '-' {
			name := a[1:]
			if eq := strings.IndexByte(name, '='); eq >= 0 {
				name = name[:eq]
			}
			long := cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil
			// A one-letter name ("-n 3") is a long flag unless the command defines it as
			// a shorthand.
			if long && (len(name) > 1 || cmd.Flags().ShorthandLookup(name) == nil) {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// envAll, as a command annotation, lets every flag of the command come from the
// environment. Long-running commands that are configured rather than invoked (the
// agent) set it; for the others only envFlags do, so that a stray WOLKE_RECURSE cannot
// turn `wolke kv delete foo` into a recursive delete.
const envAll = "wolke/env-all"

var envFlags = map[string]bool{"http-addr": true, "token": true}

// applyEnv fills flags that were not given on the command line from WOLKE_<FLAG>.
func applyEnv(cmd *cobra.Command) error {
	var firstErr error
	all := cmd.Annotations[envAll] == "true"
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || !(all || envFlags[f.Name]) {
			return
		}
		env := "WOLKE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			if err := sv.Replace(strings.Split(v, ",")); err != nil {
				firstErr = usageErrorf("%s: %v", env, err)
			}
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			firstErr = usageErrorf("%s: %v", env, err)
		}
	})
	return firstErr
}

package chassis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// UsageError is returned by Run for command-line arguments it does not understand;
// Main prints it and exits with code 2.
type UsageError struct {
	Msg string
}

func (e *UsageError) Error() string { return e.Msg }

// Main runs the service as a program's main function: Run with os.Args[1:] (unless
// s.Args is set), then exit. Exit codes: 0 after a clean shutdown or task; 2 with a
// one-line message on stderr for a bad environment or command line (the message names
// every bad variable); 1 with the error for anything else.
func Main(s Service) {
	if s.Args == nil {
		s.Args = os.Args[1:]
	}
	err := Run(context.Background(), s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", s.Name, oneLine(err.Error()))
	}
	os.Exit(ExitCode(err))
}

// ExitCode maps Run's result to Main's exit code: 0 for nil, 2 for a *ConfigError or
// *UsageError, 1 otherwise.
func ExitCode(err error) int {
	var ce *ConfigError
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce), errors.As(err, &ue):
		return 2
	}
	return 1
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// command runs `<binary> <args...>`: help, version or a task.
func (in *Instance) command(ctx context.Context, args []string) error {
	if printInfo(in.svc, args) {
		return nil
	}
	task, ok := in.svc.Tasks[args[0]]
	if !ok {
		return &UsageError{Msg: fmt.Sprintf("unknown command %q (run `%s help`)", args[0], in.svc.Name)}
	}
	in.started = time.Now()
	id := fmt.Sprintf("%s-%s-%d", in.svc.Name, args[0], os.Getpid())
	in.mu.Lock()
	in.id = id
	in.mu.Unlock()
	in.logID.Store(&id)
	defer in.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	lctx, cancel := context.WithTimeout(ctx, in.set.StartTimeout)
	err := in.dyn.load(lctx)
	cancel()
	if err != nil {
		in.log.Warn("task runs with the default dynamic configuration", "error", err.Error())
	} else {
		in.Go(in.dyn.watch)
	}
	in.state.Store(stateReady)
	close(in.regDone) // a task does not register: its locks are bound to the node only
	in.log.Info("task starting", "task", args[0], "args", args[1:])
	err = task.Run(ctx, in, args[1:])
	in.bgCancel()
	in.bg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), in.set.DrainTimeout)
	defer cancel()
	in.runOnShutdown(sctx)
	if err != nil {
		in.log.Error("task failed", "task", args[0], "error", err.Error(), "ms", time.Since(in.started).Milliseconds())
		return fmt.Errorf("task %s: %w", args[0], err)
	}
	in.log.Info("task done", "task", args[0], "ms", time.Since(in.started).Milliseconds())
	return nil
}

// printInfo answers help and version (before the environment is read, so that
// help works where the environment is not complete); it reports whether it did.
func printInfo(s Service, args []string) bool {
	if len(args) == 0 {
		return false
	}
	w := s.Stdout
	if w == nil {
		w = os.Stdout
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(w, s)
		return true
	case "version", "-version", "--version":
		fmt.Fprintf(w, "%s %s\n", s.Name, s.Version)
		return true
	}
	return false
}

// usage prints what `<binary> help` shows: commands, tasks and every environment
// variable with its default.
func usage(w io.Writer, s Service) {
	name := s.Name
	fmt.Fprintf(w, "%s %s\n\nUsage:\n", name, s.Version)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\tserve until SIGTERM\n", name)
	if len(s.Tasks) > 0 {
		fmt.Fprintf(tw, "  %s <task> [args...]\trun a one-off task and exit\n", name)
	}
	fmt.Fprintf(tw, "  %s help | version\t\n", name)
	tw.Flush()
	if len(s.Tasks) > 0 {
		fmt.Fprintf(w, "\nTasks:\n")
		names := make([]string, 0, len(s.Tasks))
		for n := range s.Tasks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(tw, "  %s\t%s\n", n, s.Tasks[n].Help)
		}
		tw.Flush()
	}
	section := func(title string, docs []envDoc) {
		if len(docs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, d := range docs {
			def := ""
			switch {
			case d.Required:
				def = "required"
			case d.Default != "":
				def = fmt.Sprintf("default %q", d.Default)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", strings.Join(d.Names, ", "), def, d.Help)
		}
		tw.Flush()
	}
	if s.Config != nil {
		section("Environment ("+name+")", describeEnv(s.Config))
	}
	section("Environment (chassis)", describeEnv(&settings{}))
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/confsync"
)

func init() { subcommands = append(subcommands, newWatchCmd, newTemplateCmd) }

// The watch command follows `consul watch`: the same types, flags, handler input and
// CONSUL_INDEX variable, built on confsync.Watch. Where wolke differs:
//
//   - a handler that fails (non-zero exit, or cannot start) is logged and the watch goes
//     on; consul watch stops with exit 1;
//   - the handler runs under /bin/sh -c (not $SHELL), or directly with -shell=false;
//   - errors are retried after 1 s × failures², at most 60 s (consul: 5 s × failures²,
//     at most 180 s), and the index is reset after an error as well as when it goes
//     backwards;
//   - -tag may be repeated (instances must have every tag).
func newWatchCmd() *cobra.Command {
	var (
		p         confsync.Params
		stale     bool
		shell     bool
		waitTime  time.Duration
		handlerTO time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch -type TYPE [flags] [--] [HANDLER...]",
		Short: "Run a handler whenever a key, prefix, service, the catalog or events change (like consul watch)",
		Long: `Watch a view of the agent's data through blocking queries and run HANDLER with the
current data whenever it changes: once at the start, then each time the agent reports a
new index AND the data differs from what HANDLER last saw (a write of an unrelated key,
or one that stores the same data, runs nothing).

HANDLER gets the data as JSON on standard input, in the shape of Consul's HTTP API for
the type, and the index in the environment variable CONSUL_INDEX; its output goes to
wolke's. It runs under "sh -c" (the arguments joined by spaces), or directly with
-shell=false. A failing handler is logged and the watch goes on. Put "--" before a
handler that has flags of its own.

Without HANDLER the data is printed as indented JSON once and the command exits.

  -type key        -key KEY                        the KVPair, or null
  -type keyprefix  -prefix PREFIX                  [KVPair]
  -type services                                   {"name": [tags]}    (catalog)
  -type nodes                                      [Node]              (catalog)
  -type service    -service NAME [-tag T]... [-passingonly]   [ServiceEntry] (health)
  -type checks     [-service NAME | -state any|passing|warning|critical]  [HealthCheck]
  -type event      [-name NAME]                    the new [UserEvent]

A failed query is retried after 1 s × failures², at most 60 s.`,
		Example: `  wolke watch -type key -key config/app -- /usr/local/bin/reload-app
  wolke watch -type keyprefix -prefix config/ -- 'jq . >> /var/log/config-changes'
  wolke watch -type service -service web -passingonly
  wolke watch -type event -name deploy -- ./deploy.sh`,
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // the first argument that is not a flag starts HANDLER
	f.StringVar(&p.Type, "type", "", "watch type: "+strings.Join(confsync.WatchTypes, ", "))
	f.StringVar(&p.Key, "key", "", "the key to watch (type key)")
	f.StringVar(&p.Prefix, "prefix", "", "the key prefix to watch (type keyprefix)")
	f.StringVar(&p.Service, "service", "", "the service to watch (type service; type checks: its checks)")
	f.StringArrayVar(&p.Tags, "tag", nil, "only instances with this tag (type service; repeatable, all must match)")
	f.BoolVar(&p.PassingOnly, "passingonly", false, "only instances whose checks all pass (type service)")
	f.StringVar(&p.State, "state", "", "the check state to watch: any, passing, warning, critical (type checks)")
	f.StringVar(&p.Name, "name", "", "only events of this name (type event)")
	f.BoolVar(&stale, "stale", false, "let any server answer, possibly with stale data")
	f.BoolVar(&shell, "shell", true, "run HANDLER through sh -c; with -shell=false, run its arguments directly")
	f.DurationVar(&waitTime, "wait-time", confsync.DefaultWaitTime, "how long one blocking query waits for a change")
	f.DurationVar(&handlerTO, "handler-timeout", 0, "kill a handler that runs longer than this (0: no limit)")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p.Key, p.Prefix = strings.TrimPrefix(p.Key, "/"), strings.TrimPrefix(p.Prefix, "/")
		if waitTime <= 0 {
			return usageErrorf("-wait-time must be positive")
		}
		c, closeIdle, err := longPollClient(cf)
		if err != nil {
			return err
		}
		defer closeIdle()
		w, err := confsync.NewWatch(c, p)
		if err != nil {
			if errors.Is(err, confsync.ErrInvalidParams) {
				return usageErrorf("%s", strings.TrimPrefix(err.Error(), "confsync: "))
			}
			return err
		}
		if len(args) == 0 {
			// Like consul watch without a handler: print the current data and exit.
			result, _, err := w.Query(queryOpts(cmd.Context(), stale))
			if err != nil {
				return queryError(err)
			}
			b, err := json.MarshalIndent(result, "", "    ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return err
		}
		// Like consul watch, fail at once when the agent cannot be reached; later
		// failures are retried.
		if _, err := c.Agent().Self(); err != nil {
			return queryError(err)
		}
		logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
		h := &watchHandler{args: args, shell: shell, timeout: handlerTO,
			stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), logger: logger}
		ctx := cmd.Context()
		w.Stale, w.WaitTime, w.Logger = stale, waitTime, logger
		w.Handler = func(index uint64, result any) { h.run(ctx, index, result) }
		return w.Run(ctx)
	}
	return cmd
}

// longPollClient returns a client like cf.client() (same address, token and
// environment rules) whose transport keeps up to 128 idle connections to the agent, so
// that many concurrent blocking queries reuse their connections (Go's default keeps 2,
// and every further query would dial again), and a function that closes the idle
// connections when the command is done.
func longPollClient(cf *clientFlags) (*api.Client, func(), error) {
	ep, err := cf.resolve(os.LookupEnv)
	if err != nil {
		return nil, nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 128
	c, err := api.NewClient(&api.Config{
		Address:    ep.Host,
		Scheme:     ep.Scheme,
		PathPrefix: ep.PathPrefix,
		Token:      ep.Token,
		Transport:  transport,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating a client for %s: %w", ep.URL(), err)
	}
	return c, transport.CloseIdleConnections, nil
}

// watchHandler runs the handler command of a watch.
type watchHandler struct {
	args           []string
	shell          bool
	timeout        time.Duration
	stdout, stderr io.Writer
	logger         *slog.Logger
}

// run runs the handler once with result as JSON on stdin and waits for it; a failure is
// logged. When ctx ends (wolke is stopping) the handler is killed.
func (h *watchHandler) run(ctx context.Context, index uint64, result any) {
	var in bytes.Buffer
	if err := json.NewEncoder(&in).Encode(result); err != nil {
		h.logger.Error("cannot encode the watch result", "error", err)
		return
	}
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	var cmd *exec.Cmd
	if h.shell {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", strings.Join(h.args, " "))
	} else {
		cmd = exec.CommandContext(ctx, h.args[0], h.args[1:]...)
	}
	cmd.Env = append(os.Environ(), "CONSUL_INDEX="+strconv.FormatUint(index, 10))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &in, h.stdout, h.stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		h.logger.Debug("handler ran", "index", index)
	case errors.As(err, &ee):
		h.logger.Error("handler failed", "index", index, "exit_code", ee.ExitCode(), "error", err)
	default:
		h.logger.Error("handler did not run", "index", index, "error", err)
	}
}

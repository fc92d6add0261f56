package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newElectCmd) }

// electRestartDelay is the pause before campaigning again after the child exited on its
// own while leader, so that a command that fails at once does not spin.
const electRestartDelay = time.Second

// leaderValue is what the leader writes into PREFIX/leader: enough for anyone reading
// the key to find and name it.
type leaderValue struct {
	Name string `json:"Name"`
	Node string `json:"Node"` // the agent the instance talks to
	Host string `json:"Host"`
	PID  int    `json:"PID"`
}

func newElectCmd() *cobra.Command {
	var opts lockOptions
	var name string
	var show bool
	cmd := &cobra.Command{
		Use:   "elect [flags] PREFIX -- CMD [ARGS...]",
		Short: "Run a command only while this instance is the elected leader",
		Long: `Campaign for leadership at PREFIX/leader with Consul's leader-election recipe (a
session with a TTL and lock-delay, PUT ?acquire=SESSION with this instance's identity as
the value, a blocking read to notice the loss) and run CMD only while leader. When
leadership is lost CMD gets SIGTERM and, -kill-grace later, SIGKILL, and the campaign
starts again; when CMD exits on its own, leadership is given up and the campaign starts
again a second later. Leader changes are printed as they happen. SIGINT and SIGTERM are
passed on to CMD and end wolke elect, which then resigns.

The value of PREFIX/leader names the leader ({"Name","Node","Host","PID"}); the key has
a Session while someone leads. 'wolke elect -show PREFIX' prints the current leader's
value, or fails (exit 1) when there is none. CMD gets WOLKE_LEADER=true and the fencing
token WOLKE_LOCK_INDEX (the key's ModifyIndex at the election), as with wolke lock.`,
		Example: `  wolke elect -name "$HOSTNAME" services/billing -- ./billing-scheduler
  wolke elect -show services/billing`,
		Args: func(_ *cobra.Command, args []string) error {
			args = trimDashDash(args)
			switch {
			case show && len(args) != 1:
				return usageErrorf("-show takes PREFIX only: wolke elect -show PREFIX")
			case !show && len(args) < 2:
				return usageErrorf("want PREFIX and a command: wolke elect [flags] PREFIX -- CMD [ARGS...]")
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "name of this instance in the leader key's value (default: the host name)")
	f.BoolVar(&show, "show", false, "print the current leader's value and exit")
	opts.addFlags(cmd)
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		args = trimDashDash(args)
		prefix := strings.Trim(args[0], "/")
		if prefix == "" {
			return usageErrorf("PREFIX must not be empty")
		}
		if err := opts.validate(); err != nil {
			return err
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		key := path.Join(prefix, "leader")
		if show {
			return showLeader(cmd.Context(), c, key, cmd.OutOrStdout())
		}
		host, _ := os.Hostname()
		if name == "" {
			name = host
		}
		e := &election{
			opts: opts, c: c, key: key, argv: args[1:],
			val:   leaderValue{Name: name, Host: host, PID: os.Getpid()},
			stdin: cmd.InOrStdin(), stdout: shareWriter(cmd.OutOrStdout()), stderr: shareWriter(cmd.ErrOrStderr()),
		}
		return e.run(cmd.Context())
	}
	return cmd
}

func showLeader(ctx context.Context, c *api.Client, key string, out io.Writer) error {
	pair, _, err := c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return queryError(err)
	}
	if pair == nil || pair.Session == "" {
		return errors.New("no leader at " + key)
	}
	_, err = fmt.Fprintf(out, "%s\n", pair.Value)
	return err
}

// election is one `wolke elect` instance.
type election struct {
	opts           lockOptions
	c              *api.Client
	key            string
	argv           []string
	val            leaderValue
	stdin          io.Reader
	stdout, stderr io.Writer
	outMu          sync.Mutex
}

func (e *election) logf(format string, args ...any) {
	if e.opts.verbose {
		e.printf(e.stderr, "wolke elect: "+format, args...)
	}
}

func (e *election) printf(w io.Writer, format string, args ...any) {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	fmt.Fprintf(w, format+"\n", args...)
}

func (e *election) run(ctx context.Context) error {
	sigCh := make(chan os.Signal, 4)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigCh)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The node name comes from the agent; retry while it is unreachable.
	if err := retryAgent(ctx, e.logf, "asking the agent for its node name", func() error {
		n, err := e.c.Agent().NodeName()
		e.val.Node = n
		return err
	}); err != nil {
		return nil // interrupted before anything started
	}
	value, _ := json.Marshal(e.val)

	var watchers sync.WaitGroup
	watchers.Add(1)
	go func() { defer watchers.Done(); e.watch(ctx) }()
	defer watchers.Wait()
	defer cancel()

	for ctx.Err() == nil {
		// Campaign: a fresh session each round, so that a lost one never lingers.
		sess, err := createSession(ctx, e.c, "wolke elect "+e.val.Name+" at "+e.key, e.opts, e.logf)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		acqCtx, acqCancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sigCh:
				cancel()
			case <-acqCtx.Done():
			}
		}()
		m, err := acquireMutex(acqCtx, e.c, sess, e.key, value, 0, 3, e.logf)
		acqCancel()
		if err != nil {
			sess.destroy()
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, api.ErrLockConflict) {
				return err
			}
			e.logf("campaign: %v", err)
			continue
		}
		e.printf(e.stderr, "wolke elect: elected leader of %s (fencing token %d)", e.key, m.token())
		env := append(os.Environ(),
			"WOLKE_LEADER=true",
			"WOLKE_LOCK_INDEX="+strconv.FormatUint(m.token(), 10),
			"WOLKE_LOCK_KEY="+e.key,
			"WOLKE_LOCK_SESSION="+sess.id,
		)
		var stdin io.Reader
		if e.opts.passStdin {
			stdin = e.stdin
		}
		ch, err := startChild(e.argv, e.opts.shell, env, stdin, e.stdout, e.stderr)
		if err != nil {
			e.resign(m, sess)
			return err
		}
		childExited := false
		select {
		case <-ch.done:
			childExited = true
			e.printf(e.stderr, "wolke elect: child exited with status %d; resigning", ch.exitCode())
		case <-m.lost():
			e.printf(e.stderr, "wolke elect: leadership lost; stopping the child (pid %d)", ch.pid())
			ch.terminate(syscall.SIGTERM, e.opts.killGrace)
		case s := <-sigCh:
			cancel()
			ch.terminate(s, e.opts.killGrace)
		case <-ctx.Done():
			ch.terminate(syscall.SIGTERM, e.opts.killGrace)
		}
		e.resign(m, sess)
		if childExited && sleepCtx(ctx, electRestartDelay) != nil {
			break
		}
	}
	return nil
}

// resign releases the key (no lock-delay for the next leader, unlike an invalidated
// session) and destroys the session.
func (e *election) resign(m *mutex, sess *session) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := m.release(ctx); err != nil {
		e.printf(e.stderr, "wolke elect: releasing %s: %v", e.key, err)
	}
	sess.destroy()
}

// watch prints every change of leader until ctx ends.
func (e *election) watch(ctx context.Context) {
	var index uint64
	last := "\x00"
	for ctx.Err() == nil {
		q := &api.QueryOptions{WaitIndex: index, WaitTime: monitorWait}
		pair, meta, err := e.c.KV().Get(e.key, q.WithContext(ctx))
		if err != nil {
			index = 0
			if sleepCtx(ctx, time.Second) != nil {
				return
			}
			continue
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		now := "none"
		if pair != nil && pair.Session != "" {
			now = string(pair.Value)
		}
		if now != last {
			e.printf(e.stdout, "leader: %s", now)
			last = now
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newLockCmd) }

// `wolke lock` follows `consul lock`: the same key layout (PREFIX/.lock for a lock,
// PREFIX/.lock plus one contender key per session for a semaphore), the same key flags
// (so consul lock, consul/api's Lock and Semaphore and wolke lock exclude each other),
// the same flags. Where wolke differs:
//
//   - the exit code is the child's (128+N if a signal N ended it); 1 if the lock was not
//     acquired (timeout, interrupted, agent trouble), 2 for usage errors. -child-exit-code
//     is accepted and changes nothing;
//   - the child gets the fencing token WOLKE_LOCK_INDEX (see docs/locks.md), and dies
//     with wolke lock (Linux parent-death signal) if wolke lock itself is killed;
//   - acquisition rides out agent errors (an election, a restarting agent) until
//     -timeout instead of giving up on the first one, and retries a key under lock-delay
//     every 250ms instead of every 5s;
//   - the session's TTL and lock-delay are flags (-ttl, -lock-delay), and the child is
//     stopped when no renewal has succeeded for a whole TTL, before the servers (which
//     wait twice the TTL) can hand the lock to someone else;
//   - one argument after PREFIX is a shell command line (Consul's default); several are
//     run as they are, without joining them into one shell line.

const (
	// lockRetryDelay is the wait before trying again after an acquire was refused while
	// the key looked free: lock-delay is in effect (Consul's client waits 5s).
	lockRetryDelay = 250 * time.Millisecond
	// monitorRetryTime is the wait between monitor retries after an error (consul lock's).
	monitorRetryTime = time.Second
	// monitorWait bounds one blocking read of the monitor.
	monitorWait = 30 * time.Second
	// releaseTimeout bounds the clean-up requests made on the way out.
	releaseTimeout = 5 * time.Second
)

// errNotAcquired means the lock was not obtained: -timeout passed or an interrupt came.
var errNotAcquired = errors.New("lock not acquired")

// lockOptions are the flags shared by lock and elect.
type lockOptions struct {
	ttl       time.Duration
	lockDelay time.Duration
	killGrace time.Duration
	passStdin bool
	shell     bool
	verbose   bool
}

func (o *lockOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.DurationVar(&o.ttl, "ttl", 15*time.Second, "session TTL; renewed every TTL/2, the servers drop the session 2xTTL after the last renewal")
	f.DurationVar(&o.lockDelay, "lock-delay", 15*time.Second, "session lock-delay: after the session is invalidated, nobody can take the lock for this long (0 to 60s)")
	f.DurationVar(&o.killGrace, "kill-grace", 5*time.Second, "time between SIGTERM and SIGKILL when the child must stop")
	f.BoolVar(&o.passStdin, "pass-stdin", false, "pass stdin to the child")
	f.BoolVar(&o.shell, "shell", true, "run a single CMD argument with $SHELL -c (default /bin/sh); several arguments are always run directly")
	f.BoolVar(&o.verbose, "verbose", false, "report each step on stderr")
}

func (o *lockOptions) validate() error {
	switch {
	case o.ttl <= 0:
		return usageErrorf("-ttl must be positive")
	case o.lockDelay < 0 || o.lockDelay > 60*time.Second:
		return usageErrorf("-lock-delay must be between 0 and 60s")
	case o.killGrace < 0:
		return usageErrorf("-kill-grace must not be negative")
	}
	return nil
}

func newLockCmd() *cobra.Command {
	var opts lockOptions
	var limit, monitorRetry int
	var name string
	var timeout time.Duration
	var childExitCode bool
	cmd := &cobra.Command{
		Use:   "lock [flags] PREFIX -- CMD [ARGS...]",
		Short: "Run a command while holding a lock or semaphore (like consul lock)",
		Long: `Acquire the lock PREFIX/.lock (or, with -n N>1, one of N slots of the semaphore at
PREFIX), run CMD while holding it, and release it when CMD exits. If the lock is lost
(session invalidated, key taken, agent unreachable for -monitor-retry tries, no renewal
for a whole -ttl) CMD gets SIGTERM and, -kill-grace later, SIGKILL. If wolke lock is
killed, CMD is killed with it (Linux parent-death signal). SIGINT, SIGTERM and SIGHUP
are passed on to CMD.

CMD gets CONSUL_LOCK_HELD=true, WOLKE_LOCK_KEY, WOLKE_LOCK_SESSION and the fencing
token WOLKE_LOCK_INDEX: the lock key's ModifyIndex right after acquisition (for a
semaphore, PREFIX/.lock's ModifyIndex read right after this holder's CAS). A resource
that refuses writes carrying a token lower than the highest it has seen cannot be
corrupted by a holder that lost the lock without knowing it; see docs/locks.md.

Exit status: CMD's (128+N if signal N ended it); 1 if the lock was not acquired within
-timeout or the command was interrupted before CMD started; 2 for usage errors.
Put "--" before CMD so that its flags are not taken for wolke's.`,
		Example: `  wolke lock -timeout 30s jobs/backup -- /usr/local/bin/backup --full
  wolke lock -n 3 pools/encoders -- ./encode.sh
  wolke lock locks/db 'psql -c "vacuum full"'`,
		Args: func(_ *cobra.Command, args []string) error {
			args = trimDashDash(args)
			if len(args) < 2 {
				return usageErrorf("want PREFIX and a command: wolke lock [flags] PREFIX -- CMD [ARGS...]")
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after PREFIX belong to CMD
	f := cmd.Flags()
	f.IntVar(&limit, "n", 1, "number of holders allowed at once; above 1 a semaphore is used")
	f.StringVar(&name, "name", "", "session name (default: generated from CMD and PREFIX)")
	f.DurationVar(&timeout, "timeout", 0, "give up (exit 1) if the lock is not acquired within this time; 0 waits forever")
	f.DurationVar(&timeout, "try", 0, "deprecated: use -timeout")
	f.IntVar(&monitorRetry, "monitor-retry", 3, "agent errors tolerated in a row (1s apart) while monitoring the lock before it counts as lost")
	f.BoolVar(&childExitCode, "child-exit-code", false, "accepted for consul compatibility: wolke lock always exits with the child's code")
	_ = f.MarkHidden("try")
	opts.addFlags(cmd)
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		args = trimDashDash(args)
		prefix := strings.Trim(args[0], "/")
		switch {
		case prefix == "":
			return usageErrorf("PREFIX must not be empty")
		case limit <= 0:
			return usageErrorf("-n must be positive")
		case timeout < 0:
			return usageErrorf("-timeout must not be negative")
		case monitorRetry < 0:
			return usageErrorf("-monitor-retry must be >= 0")
		}
		if err := opts.validate(); err != nil {
			return err
		}
		if name == "" {
			name = fmt.Sprintf("wolke lock for '%s' at '%s'", strings.Join(args[1:], " "), prefix)
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		r := &lockRun{
			opts: opts, c: c, name: name, prefix: prefix, limit: limit, timeout: timeout,
			monitorRetry: monitorRetry, argv: args[1:],
			stdin: cmd.InOrStdin(), stdout: shareWriter(cmd.OutOrStdout()), stderr: shareWriter(cmd.ErrOrStderr()),
		}
		code, err := r.run(cmd.Context())
		if err != nil {
			return err
		}
		if code != 0 {
			return &exitError{code: code, err: fmt.Errorf("child exited with status %d", code)}
		}
		return nil
	}
	return cmd
}

// trimDashDash drops the "--" between PREFIX and CMD, which flag parsing leaves in
// place because it stops at PREFIX.
func trimDashDash(args []string) []string {
	if len(args) >= 2 && args[1] == "--" {
		return append([]string{args[0]}, args[2:]...)
	}
	return args
}

// lockRun is one `wolke lock` invocation.
type lockRun struct {
	opts                lockOptions
	c                   *api.Client
	name, prefix        string
	limit, monitorRetry int
	timeout             time.Duration
	argv                []string
	stdin               io.Reader
	stdout, stderr      io.Writer
}

// heldLock is an acquired lock or semaphore slot.
type heldLock interface {
	// token is the fencing token: a Raft index taken right after acquisition.
	token() uint64
	// lost is closed when the lock is no longer known to be held.
	lost() <-chan struct{}
	// release gives the lock up and removes what is no longer used (best effort).
	release(ctx context.Context) error
}

func (r *lockRun) logf(format string, args ...any) {
	if r.opts.verbose {
		fmt.Fprintf(r.stderr, "wolke lock: "+format+"\n", args...)
	}
}

func (r *lockRun) run(ctx context.Context) (int, error) {
	sigCh := make(chan os.Signal, 4)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigCh)

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.timeout > 0 {
		var c2 context.CancelFunc
		actx, c2 = context.WithTimeout(actx, r.timeout)
		defer c2()
	}
	go func() { // an interrupt while waiting for the lock
		select {
		case <-sigCh:
			cancel()
		case <-actx.Done():
		}
	}()

	sess, err := createSession(actx, r.c, r.name, r.opts, r.logf)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNotAcquired, err)
	}
	defer sess.destroy()

	var held heldLock
	if r.limit == 1 {
		key := path.Join(r.prefix, api.DefaultSemaphoreKey)
		r.logf("waiting for lock %s (session %s)", key, sess.id)
		held, err = acquireMutex(actx, r.c, sess, key, nil, api.LockFlagValue, r.monitorRetry, r.logf)
	} else {
		r.logf("waiting for a slot of semaphore %s (limit %d, session %s)", r.prefix, r.limit, sess.id)
		held, err = acquireSemaphore(actx, r.c, sess, r.prefix, r.limit, r.monitorRetry, r.logf)
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w within -timeout %v", errNotAcquired, r.timeout)
		}
		if actx.Err() != nil {
			return 0, fmt.Errorf("%w: interrupted", errNotAcquired)
		}
		return 0, fmt.Errorf("%w: %v", errNotAcquired, err)
	}
	defer func() {
		rctx, c := context.WithTimeout(context.Background(), releaseTimeout)
		defer c()
		if err := held.release(rctx); err != nil {
			fmt.Fprintf(r.stderr, "wolke lock: releasing the lock: %v\n", err)
		}
	}()
	// The waiting goroutine above must not turn a later signal into a cancel of the
	// child's life: from here on signals are forwarded.
	cancel()
	r.logf("lock acquired; fencing token %d", held.token())

	env := append(os.Environ(),
		"CONSUL_LOCK_HELD=true",
		"WOLKE_LOCK_INDEX="+strconv.FormatUint(held.token(), 10),
		"WOLKE_LOCK_KEY="+path.Join(r.prefix, api.DefaultSemaphoreKey),
		"WOLKE_LOCK_SESSION="+sess.id,
	)
	var stdin io.Reader
	if r.opts.passStdin {
		stdin = r.stdin
	}
	select {
	case <-held.lost():
		return 0, fmt.Errorf("%w: lost before the child started", errNotAcquired)
	default:
	}
	ch, err := startChild(r.argv, r.opts.shell, env, stdin, r.stdout, r.stderr)
	if err != nil {
		return 0, err
	}
	r.logf("child started, pid %d", ch.pid())
	return superviseChild(ctx, ch, held.lost(), sigCh, r.opts.killGrace, func(format string, args ...any) {
		fmt.Fprintf(r.stderr, "wolke lock: "+format+"\n", args...)
	}), nil
}

// superviseChild waits for the child to exit, stopping it (SIGTERM, then SIGKILL after
// grace) when lost is closed or ctx ends, and forwarding the signals that arrive on
// sigCh. It returns the child's exit code.
func superviseChild(ctx context.Context, ch *child, lost <-chan struct{}, sigCh <-chan os.Signal, grace time.Duration, warnf func(string, ...any)) int {
	select {
	case <-ch.done:
	case <-lost:
		warnf("lock lost; stopping the child (pid %d)", ch.pid())
		ch.terminate(syscall.SIGTERM, grace)
	case s := <-sigCh:
		ch.terminate(s, grace)
	case <-ctx.Done():
		// The signal that cancelled ctx is normally on sigCh too; pass that one on.
		sig := os.Signal(syscall.SIGTERM)
		select {
		case s := <-sigCh:
			sig = s
		case <-time.After(10 * time.Millisecond):
		}
		ch.terminate(sig, grace)
	}
	return ch.exitCode()
}

// session is a Consul session kept alive by renewals at TTL/2. lost is closed when
// the servers report the session gone or no renewal has succeeded for a whole TTL:
// the servers wait 2xTTL, so a holder that stops its work on lost (within -kill-grace
// < TTL) is done before anyone else can be given its locks.
type session struct {
	c       *api.Client
	id      string
	ttl     time.Duration
	lostCh  chan struct{}
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// createSession creates a session with the options' TTL and lock-delay, retrying
// agent errors until ctx ends.
func createSession(ctx context.Context, c *api.Client, name string, o lockOptions, logf func(string, ...any)) (*session, error) {
	entry := &api.SessionEntry{
		Name:      name,
		TTL:       o.ttl.String(),
		LockDelay: o.lockDelay,
		Behavior:  api.SessionBehaviorRelease,
	}
	var id string
	err := retryAgent(ctx, logf, "creating a session", func() error {
		var err error
		id, _, err = c.Session().Create(entry, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil && isBadRequest(err) {
			return permanent{err}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &session{c: c, id: id, ttl: o.ttl, lostCh: make(chan struct{}), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.renew(logf)
	return s, nil
}

func (s *session) lost() <-chan struct{} { return s.lostCh }

func (s *session) renew(logf func(string, ...any)) {
	defer s.wg.Done()
	lastOK := time.Now()
	wait := s.ttl / 2
	for {
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		left := s.ttl - time.Since(lastOK)
		if left <= 0 {
			logf("no session renewal succeeded for %v; the lock counts as lost", s.ttl)
			close(s.lostCh)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), left)
		entry, _, err := s.c.Session().Renew(s.id, (&api.WriteOptions{}).WithContext(ctx))
		cancel()
		switch {
		case err != nil:
			logf("renewing session %s: %v", s.id, err)
			wait = min(time.Second, max(s.ttl-time.Since(lastOK), time.Millisecond))
		case entry == nil:
			logf("session %s is gone", s.id)
			close(s.lostCh)
			return
		default:
			lastOK, wait = time.Now(), s.ttl/2
		}
	}
}

// destroy stops the renewals and destroys the session (best effort).
func (s *session) destroy() {
	s.stopped.Do(func() {
		close(s.stop)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		_, _ = s.c.Session().Destroy(s.id, (&api.WriteOptions{}).WithContext(ctx))
	})
}

// permanent marks an error retryAgent must not retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

func isBadRequest(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code >= 400 && se.Code < 500
}

// retryAgent calls f until it succeeds, returns a permanent error or ctx ends, backing
// off from 100ms to 1s between agent errors.
func retryAgent(ctx context.Context, logf func(string, ...any), what string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logf("%s: %v (retrying)", what, err)
		if sleepCtx(ctx, backoff) != nil {
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// mutex is a held lock on one key: Consul's leader-election recipe (acquire with a
// session, watch the key with blocking reads).
type mutex struct {
	c      *api.Client
	sess   *session
	key    string
	flags  uint64
	index  uint64
	lostCh chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
}

// acquireMutex waits until key is acquired with sess, retrying agent errors, and
// starts watching it. The key must carry flags (or not exist): a key used by a
// semaphore or another tool is a conflict.
func acquireMutex(ctx context.Context, c *api.Client, sess *session, key string, value []byte, flags uint64, monitorRetry int, logf func(string, ...any)) (*mutex, error) {
	kv := c.KV()
	var waitIndex uint64
	backoff := 100 * time.Millisecond
	agentErr := func(what string, err error) error {
		logf("%s: %v (retrying)", what, err)
		waitIndex = 0
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, time.Second)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sess.lost():
			return nil, errors.New("session lost while waiting for the lock")
		default:
		}
		q := &api.QueryOptions{WaitIndex: waitIndex, WaitTime: 15 * time.Second, RequireConsistent: waitIndex == 0}
		pair, meta, err := kv.Get(key, q.WithContext(ctx))
		if err != nil {
			if err := agentErr("reading "+key, err); err != nil {
				return nil, err
			}
			continue
		}
		backoff = 100 * time.Millisecond
		if pair != nil && pair.Flags != flags {
			return nil, fmt.Errorf("%s exists and is not a lock of this kind (flags %#x): %w", key, pair.Flags, api.ErrLockConflict)
		}
		if pair != nil && pair.Session == sess.id && waitIndex == 0 {
			// A consistent read shows the key ours: its ModifyIndex is the token.
			m := &mutex{c: c, sess: sess, key: key, flags: flags, index: pair.ModifyIndex,
				lostCh: make(chan struct{}), stop: make(chan struct{})}
			m.wg.Add(1)
			go m.monitor(meta.LastIndex, monitorRetry, logf)
			return m, nil
		}
		if pair != nil && pair.Session != "" && pair.Session != sess.id {
			waitIndex = meta.LastIndex
			continue
		}
		ok, _, err := kv.Acquire(&api.KVPair{Key: key, Value: value, Flags: flags, Session: sess.id}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			if isBadRequest(err) {
				return nil, err
			}
			if err := agentErr("acquiring "+key, err); err != nil {
				return nil, err
			}
			continue
		}
		waitIndex = 0 // re-read consistently: ours (take the token) or someone else's
		if !ok {
			// Someone was faster, or lock-delay holds the key after an invalidation.
			if err := sleepCtx(ctx, lockRetryDelay); err != nil {
				return nil, err
			}
		}
	}
}

func (m *mutex) token() uint64         { return m.index }
func (m *mutex) lost() <-chan struct{} { return m.lostCh }

// monitor watches the key with consistent blocking reads and closes lostCh when it
// belongs to another session (or none), when monitorRetry agent errors in a row have
// passed, or when the session is lost.
func (m *mutex) monitor(index uint64, monitorRetry int, logf func(string, ...any)) {
	defer m.wg.Done()
	defer close(m.lostCh)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
		case <-m.sess.lost():
		}
		cancel()
	}()
	retries := monitorRetry
	for {
		q := &api.QueryOptions{WaitIndex: index, WaitTime: monitorWait, RequireConsistent: true}
		rctx, rcancel := context.WithTimeout(ctx, monitorWait+monitorWait/16+5*time.Second)
		pair, meta, err := m.c.KV().Get(m.key, q.WithContext(rctx))
		rcancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if retries == 0 {
				logf("watching %s: %v; the lock counts as lost", m.key, err)
				return
			}
			logf("watching %s: %v (%d retries left)", m.key, err, retries)
			retries--
			index = 0
			if sleepCtx(ctx, monitorRetryTime) != nil {
				return
			}
			continue
		}
		retries = monitorRetry
		if pair == nil || pair.Session != m.sess.id {
			logf("%s is no longer held by session %s", m.key, m.sess.id)
			return
		}
		index = meta.LastIndex
	}
}

// release stops watching, releases the key and deletes it if nobody took it meanwhile
// (as consul lock does).
func (m *mutex) release(ctx context.Context) error {
	close(m.stop)
	m.wg.Wait()
	kv := m.c.KV()
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if _, _, err := kv.Release(&api.KVPair{Key: m.key, Flags: m.flags, Session: m.sess.id}, wo); err != nil {
		return err
	}
	if m.flags != api.LockFlagValue {
		return nil
	}
	pair, _, err := kv.Get(m.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil || pair.Session != "" {
		return err
	}
	_, _, err = kv.DeleteCAS(&api.KVPair{Key: m.key, ModifyIndex: pair.ModifyIndex}, wo)
	return err
}

// semaphore is a held slot of consul/api's semaphore at a prefix.
type semaphore struct {
	s      *api.Semaphore
	index  uint64
	lostCh chan struct{}
	stop   chan struct{}
}

func acquireSemaphore(ctx context.Context, c *api.Client, sess *session, prefix string, limit, monitorRetry int, logf func(string, ...any)) (*semaphore, error) {
	opts := &api.SemaphoreOptions{
		Prefix: prefix, Limit: limit, Session: sess.id,
		MonitorRetries: monitorRetry, MonitorRetryTime: monitorRetryTime,
	}
	if dl, ok := ctx.Deadline(); ok {
		opts.SemaphoreTryOnce, opts.SemaphoreWaitTime = true, time.Until(dl)
	}
	s, err := c.SemaphoreOpts(opts)
	if err != nil {
		return nil, err
	}
	var semLost <-chan struct{}
	err = retryAgent(ctx, logf, "acquiring the semaphore", func() error {
		if dl, ok := ctx.Deadline(); ok {
			opts.SemaphoreWaitTime = time.Until(dl)
		}
		ch, err := s.Acquire(ctx.Done())
		switch {
		case err == nil && ch == nil:
			return permanent{errNotAcquired}
		case errors.Is(err, api.ErrSemaphoreConflict) || (err != nil && strings.Contains(err.Error(), "limit conflict")):
			return permanent{err}
		case err != nil:
			return err
		}
		semLost = ch
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The token: .lock's ModifyIndex read (consistently) after the CAS that added us.
	var index uint64
	key := path.Join(prefix, api.DefaultSemaphoreKey)
	err = retryAgent(ctx, logf, "reading "+key, func() error {
		pair, _, err := c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return err
		}
		if pair == nil || !strings.Contains(string(pair.Value), sess.id) {
			return permanent{errors.New("semaphore slot lost right after acquisition")}
		}
		index = pair.ModifyIndex
		return nil
	})
	if err != nil {
		_ = s.Release()
		return nil, err
	}
	sem := &semaphore{s: s, index: index, lostCh: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(sem.lostCh)
		select {
		case <-semLost:
		case <-sess.lost():
		case <-sem.stop:
		}
	}()
	return sem, nil
}

func (s *semaphore) token() uint64         { return s.index }
func (s *semaphore) lost() <-chan struct{} { return s.lostCh }

func (s *semaphore) release(context.Context) error {
	close(s.stop)
	if err := s.s.Release(); err != nil && !errors.Is(err, api.ErrSemaphoreNotHeld) {
		return err
	}
	if err := s.s.Destroy(); err != nil && !errors.Is(err, api.ErrSemaphoreInUse) {
		return err
	}
	return nil
}

// shareWriter returns w as it is if it is a file (the child then writes to the same
// file descriptor), else w behind a mutex: exec copies a child's output into a
// non-file writer from its own goroutine, concurrently with our messages.
func shareWriter(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok {
		return w
	}
	return &lockedWriter{w: w}
}

// lockedWriter serialises writes. It is deliberately not an io.ReaderFrom: exec's copy
// through bytes.Buffer.ReadFrom would fill the buffer outside the lock.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// child is the supervised command.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startChild runs argv with the parent-death signal set, so that the child is killed
// if this process dies (SIGKILL included). The signal is tied to the OS thread that
// forked, so that thread stays locked to its goroutine until the child has exited.
func startChild(argv []string, shell bool, env []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	if shell && len(argv) == 1 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		argv = []string{sh, "-c", argv[0]}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = childSysProcAttr()
	ch := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	return ch, nil
}

func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// terminate sends sig, waits up to grace for the child to exit, then sends SIGKILL and
// waits for it.
func (c *child) terminate(sig os.Signal, grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// exitCode waits for the child and returns its exit status, 128+N for signal N.
func (c *child) exitCode() int {
	<-c.done
	st, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && st.Signaled() {
		return 128 + int(st.Signal())
	}
	if code := c.cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	return 1
}

package chassis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrLockLost is the cause of a lock's Context once the lock is no longer held by this
// process: released, its key taken or deleted, or its session invalidated.
var ErrLockLost = errors.New("chassis: lock lost")

// LockOptions tunes Lock and Elect. The zero value takes the defaults.
type LockOptions struct {
	// TTL is the session's time to live; the lock renews it every TTL/2. If this
	// process stops renewing (it crashed, or hangs), the servers invalidate the session
	// after at most 2×TTL and the lock is free. Default 10s (wolke's and Consul's minimum).
	TTL time.Duration
	// LockDelay keeps the key from being acquired again for this long after the
	// session was invalidated (not after a release), giving a holder that has not yet
	// noticed the loss time to stop. Default 5s. Fencing tokens are what makes a
	// paused holder's writes safe; the delay only makes them rarer.
	LockDelay time.Duration
	// Value is stored in the lock key while held (default: the instance ID), so that
	// `wolke kv get` shows who holds it.
	Value []byte
}

func (o LockOptions) withDefaults() LockOptions {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.LockDelay <= 0 {
		o.LockDelay = 5 * time.Second
	}
	return o
}

// Lock is a held distributed lock: a KV key acquired with a session that the lock
// keeps alive. Its fencing token grows with every acquisition of the key.
type Lock struct {
	in      *Instance
	key     string
	session string
	token   uint64

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	done   chan struct{} // closed when the renew and monitor goroutines have stopped
}

// Lock acquires the lock at key (a KV key; the convention is
// service/<name>/<what>), waiting until it is free or ctx ends, and keeps it until
// Unlock or until it is lost. A serving instance first waits until it has registered:
// its sessions are bound to its own check as well as to the node, so that a crashed
// process loses its locks within a check interval rather than 2×TTL, and an instance
// that is not ready takes no lock (a session cannot be bound to a critical check). Compatible with consul/api's Lock and `wolke lock` on the
// same key (same flags, same session semantics).
//
// The fencing token is the lock key's ModifyIndex read right after the acquisition
// (a Raft index: a later holder always has a larger one). Pass it with every write to
// the resource the lock protects, and have the resource refuse tokens lower than the
// highest it has seen: that, not the lock, keeps a holder that was paused past the
// end of its session from overwriting its successor's work (docs/locks.md).
func (in *Instance) Lock(ctx context.Context, key string, opts LockOptions) (*Lock, error) {
	opts = opts.withDefaults()
	in.mu.Lock()
	running := in.runCalled
	in.mu.Unlock()
	if running {
		select {
		case <-in.regDone:
		case <-ctx.Done():
			return nil, fmt.Errorf("chassis: lock %s: %w", key, context.Cause(ctx))
		}
	}
	if opts.Value == nil {
		opts.Value = []byte(in.ID())
	}
	entry := &api.SessionEntry{
		Name:       in.svc.Name + " lock " + key,
		TTL:        opts.TTL.String(),
		LockDelay:  opts.LockDelay,
		Behavior:   api.SessionBehaviorRelease,
		NodeChecks: []string{"serfHealth"},
	}
	if in.registered.Load() {
		// Bound to the instance's own check too: a crashed process loses its locks
		// within a check interval instead of 2×TTL (and an instance that is not ready
		// does not take locks: the session cannot be created while the check is
		// critical, so the campaign waits).
		entry.ServiceChecks = []api.ServiceCheck{{ID: "service:" + in.ID()}}
	}
	sessions := in.consul.Session()
	var session string
	err := retry(ctx, func() error {
		var err error
		session, _, err = sessions.Create(entry, (&api.WriteOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chassis: lock %s: creating a session: %w", key, err)
	}
	l := &Lock{in: in, key: key, session: session, done: make(chan struct{})}
	if err := l.acquire(ctx, opts.Value); err != nil {
		destroySession(in.consul, session)
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.renew(opts.TTL) }()
	go func() { defer wg.Done(); l.monitor() }()
	go func() { wg.Wait(); close(l.done) }()
	return l, nil
}

// acquire waits for the key to be free and takes it.
func (l *Lock) acquire(ctx context.Context, value []byte) error {
	kv := l.in.consul.KV()
	var idx uint64
	sawFree := false // the last read found the key free, yet acquiring failed: lock-delay
	for {
		ok, _, err := kv.Acquire(&api.KVPair{Key: l.key, Value: value, Session: l.session, Flags: api.LockFlagValue},
			(&api.WriteOptions{}).WithContext(ctx))
		if err == nil && ok {
			pair, _, err := kv.Get(l.key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
			if err == nil && pair != nil && pair.Session == l.session {
				l.token = pair.ModifyIndex
				return nil
			}
			// Lost between the acquisition and the read: try again.
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chassis: lock %s: %w", l.key, context.Cause(ctx))
		}
		if err != nil {
			sleepCtx(ctx, 250*time.Millisecond)
			continue
		}
		// Held by someone else, or free but under lock-delay: wait for a change of the
		// key, at most a second (a lock-delay ends without one).
		pair, meta, err := kv.Get(l.key, (&api.QueryOptions{WaitIndex: idx, WaitTime: time.Second}).WithContext(ctx))
		switch {
		case err != nil:
			sleepCtx(ctx, 250*time.Millisecond)
		case pair != nil && pair.Flags != api.LockFlagValue && pair.Session == "":
			return fmt.Errorf("chassis: lock %s: the key exists and is not a lock (flags %#x)", l.key, pair.Flags)
		case pair == nil || pair.Session == "":
			if sawFree {
				sleepCtx(ctx, 100*time.Millisecond) // under lock-delay
			}
			idx, sawFree = 0, true
		default:
			idx, sawFree = meta.LastIndex, false
		}
	}
}

// renew keeps the session alive until the lock ends.
func (l *Lock) renew(ttl time.Duration) {
	sessions := l.in.consul.Session()
	lastOK := time.Now()
	t := time.NewTicker(ttl / 2)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		entry, _, err := sessions.Renew(l.session, (&api.WriteOptions{}).WithContext(l.ctx))
		switch {
		case err == nil && entry == nil:
			l.cancel(fmt.Errorf("%w: session %s is gone", ErrLockLost, l.session))
			return
		case err == nil:
			lastOK = time.Now()
		case time.Since(lastOK) >= ttl:
			// The servers may already have invalidated the session; treat it as lost
			// before they allow someone else in (they wait 2×TTL).
			l.cancel(fmt.Errorf("%w: no renewal succeeded for %v: %v", ErrLockLost, ttl, err))
			return
		}
	}
}

// monitor watches the key and ends the lock when it is no longer this session's.
func (l *Lock) monitor() {
	kv := l.in.consul.KV()
	var idx uint64
	failures := 0
	for l.ctx.Err() == nil {
		pair, meta, err := kv.Get(l.key, (&api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second}).WithContext(l.ctx))
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			var se api.StatusError
			if failures++; failures > 3 && !(errors.As(err, &se) && se.Code >= http.StatusInternalServerError) {
				l.cancel(fmt.Errorf("%w: watching the key failed: %v", ErrLockLost, err))
				return
			}
			sleepCtx(l.ctx, time.Second)
			continue
		}
		failures = 0
		if pair == nil || pair.Session != l.session {
			l.cancel(fmt.Errorf("%w: the key is no longer held by this session", ErrLockLost))
			return
		}
		idx = meta.LastIndex
	}
}

// Key is the lock's KV key.
func (l *Lock) Key() string { return l.key }

// Token is the fencing token: the key's ModifyIndex at acquisition.
func (l *Lock) Token() uint64 { return l.token }

// Session is the ID of the session holding the lock.
func (l *Lock) Session() string { return l.session }

// Context is cancelled when the lock is lost or released; context.Cause tells which
// (ErrLockLost wrapped with the reason, or context.Canceled after Unlock).
func (l *Lock) Context() context.Context { return l.ctx }

// Unlock releases the key and destroys the session (without lock-delay: the next
// holder may take it at once). It is safe to call more than once and after a loss.
func (l *Lock) Unlock() error {
	var err error
	l.once.Do(func() {
		lost := l.ctx.Err() != nil
		l.cancel(context.Canceled)
		<-l.done
		if !lost {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err = l.in.consul.KV().Release(&api.KVPair{Key: l.key, Session: l.session, Flags: api.LockFlagValue},
				(&api.WriteOptions{}).WithContext(ctx))
		}
		destroySession(l.in.consul, l.session)
	})
	return err
}

func destroySession(c *api.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx))
}

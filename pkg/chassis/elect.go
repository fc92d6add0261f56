package chassis

import (
	"context"
	"errors"
	"time"
)

// Elect campaigns for leadership of key until ctx ends and runs fn while this
// instance is the leader, with a context that is cancelled when leadership is lost or
// ctx ends. If fn returns while still leader, leadership is released and the campaign
// starts over a second later. Elect returns ctx's error once ctx has ended and fn has returned.
//
// Only one instance runs fn at a time as far as live, well-behaved processes go; a
// process paused past its session's end can still act late, so writes that must not
// interleave should carry the fencing token (LeaderToken) and be checked by their
// target. Run the campaign for the service's lifetime with
// in.Go(func(ctx context.Context) { in.Elect(ctx, key, fn) }): shutdown then cancels
// it, and the next leader takes over at once.
func (in *Instance) Elect(ctx context.Context, key string, fn func(ctx context.Context)) error {
	return in.ElectWith(ctx, key, LockOptions{}, fn)
}

// ElectWith is Elect with lock options.
func (in *Instance) ElectWith(ctx context.Context, key string, opts LockOptions, fn func(ctx context.Context)) error {
	for {
		l, err := in.Lock(ctx, key, opts)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			in.log.Warn("election: campaign failed, retrying", "key", key, "error", err.Error())
			sleepCtx(ctx, time.Second)
			continue
		}
		in.log.Info("election: leader", "key", key, "token", l.Token())
		lctx, cancel := context.WithCancelCause(ctx)
		stop := context.AfterFunc(l.Context(), func() { cancel(context.Cause(l.Context())) })
		fn(context.WithValue(lctx, leaderKey{}, l))
		stop()
		cause := context.Cause(lctx)
		cancel(nil)
		_ = l.Unlock()
		returned := cause == nil
		if returned {
			cause = errors.New("the function returned")
		}
		in.log.Info("election: no longer leader", "key", key, "reason", cause.Error())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if returned {
			// Not a hot loop when fn returns at once, and a chance for the others.
			sleepCtx(ctx, time.Second)
		}
	}
}

type leaderKey struct{}

// LeaderToken returns the fencing token of the leadership whose context ctx is (the
// context Elect passes to its function), or 0.
func LeaderToken(ctx context.Context) uint64 {
	if l, ok := ctx.Value(leaderKey{}).(*Lock); ok {
		return l.Token()
	}
	return 0
}

package membership

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrRetryJoinExhausted is delivered by RetryJoinResult after Config.RetryMax failed
// attempts.
var ErrRetryJoinExhausted = errors.New("membership: retry-join gave up")

// retryJoin joins cfg.RetryJoin in the background: the first attempt at once, then
// after a backoff that starts at 1 s (or RetryInterval if smaller), doubles per failed
// attempt up to RetryInterval, and is jittered by up to 10% so that agents restarted
// together do not retry in step.
func (p *Pool) retryJoin(ctx context.Context) {
	defer p.wg.Done()
	defer close(p.retryResult)
	addrs := p.cfg.RetryJoin
	wait := min(time.Second, p.cfg.RetryInterval)
	for attempt := 1; ; attempt++ {
		n, err := p.Join(ctx, addrs)
		if ctx.Err() != nil {
			return // shut down: no result
		}
		if err == nil {
			p.logger.Info("retry-join: joined", "nodes", n, "attempts", attempt, "addrs", addrs)
			p.retryResult <- nil
			return
		}
		if errors.Is(err, ErrNameConflict) {
			p.logger.Error("retry-join: giving up", "err", err)
			p.retryResult <- err
			return
		}
		if p.cfg.RetryMax > 0 && attempt >= p.cfg.RetryMax {
			err = fmt.Errorf("%w after %d attempts to join %v: %v", ErrRetryJoinExhausted, attempt, addrs, err)
			p.logger.Error("retry-join: giving up", "err", err)
			p.retryResult <- err
			return
		}
		d := wait + time.Duration(rand.Int64N(int64(wait)/10+1))
		p.logger.Warn("retry-join: attempt failed", "attempt", attempt, "addrs", addrs, "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, p.cfg.RetryInterval)
	}
}

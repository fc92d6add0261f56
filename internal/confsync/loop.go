package confsync

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"time"

	"github.com/hashicorp/consul/api"
)

// Query performs one read against the agent. opts carries the context, the index to block
// on (WaitIndex, 0 for an immediate answer), the wait time and the consistency mode; the
// query may add its own options (a filter, a datacenter) to it. It returns the result
// (the value handed to the handler and compared between calls) and the response's
// metadata, whose LastIndex is the index of the result.
type Query func(opts *api.QueryOptions) (result any, meta *api.QueryMeta, err error)

// Handler receives a result of a [Watch]: the index it was read at and the result itself.
// It runs in the watch's goroutine, so the next query waits until it returns; changes
// made meanwhile are seen together by that next query.
type Handler func(index uint64, result any)

// DefaultWaitTime is how long one blocking query waits for a change when [Watch.WaitTime]
// is zero: consul-template's block_query_wait. The agent adds its own jitter.
const DefaultWaitTime = 60 * time.Second

// DefaultBackoff is the delay before the next attempt after the failures-th consecutive
// failed query: 1 s × failures², capped at one minute (1 s, 4 s, 9 s, ... 49 s, 60 s,
// 60 s, ...). It has the shape of consul/api/watch's 5 s × failures² (capped at 180 s)
// with a shorter start and cap, so that a watcher recovers within a minute of the agent
// coming back.
func DefaultBackoff(failures int) time.Duration {
	const base, limit = time.Second, time.Minute
	if failures < 1 {
		return 0
	}
	if failures > 8 { // 8² s > 60 s; also keeps the product from overflowing
		return limit
	}
	return min(base*time.Duration(failures*failures), limit)
}

// Watch runs a Query as a blocking-query loop with Consul's watch semantics:
//
//   - the first successful result is always handed to Handler, even an empty one;
//   - after that Handler runs only when the index moved AND the result differs from the
//     last one handed over (reflect.DeepEqual), so that an agent waking the query for an
//     unrelated write, or a write that stores the same data, causes no run (Changed
//     can replace the comparison);
//   - an index of 0 in a response is taken as 1 (a 0 index would make every following
//     query return at once), and an index that went backwards (an agent restored from a
//     snapshot, or another agent answering) resets the index to 0: the next query
//     answers at once and its result is compared as usual;
//   - a failed query is retried after Backoff(failures); the index is reset to 0 (the
//     agent may have restarted) but the last result is kept, so a recovery that finds
//     the same data causes no run.
//
// The zero value is not usable: Query and Handler are required.
type Watch struct {
	// Query is the read to repeat.
	Query Query
	// Handler receives the initial result and every change.
	Handler Handler
	// WaitTime bounds each blocking query; 0 means DefaultWaitTime.
	WaitTime time.Duration
	// Stale lets any server answer (?stale), as `consul watch -stale` does.
	Stale bool
	// Backoff gives the delay after the n-th consecutive failure; nil means DefaultBackoff.
	Backoff func(failures int) time.Duration
	// Logger receives one error line per failed query; nil discards them.
	Logger *slog.Logger
	// OpaqueIndex says the index is a token to compare for equality only, never to order:
	// the event list's index is derived from the newest event's ID, so a smaller one is
	// no sign of a restart and must not reset anything.
	OpaqueIndex bool
	// Changed reports whether result differs from the last result handed to Handler;
	// nil means !reflect.DeepEqual. The event watch counts only new events.
	Changed func(last, result any) bool
	// Name identifies the watch in log lines ("key foo", "template dependency ...").
	Name string
}

// Run loops until ctx is done and then returns nil. It never returns early: errors are
// logged and retried.
func (w *Watch) Run(ctx context.Context) error {
	backoff := w.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	changed := w.Changed
	if changed == nil {
		changed = func(last, result any) bool { return !reflect.DeepEqual(last, result) }
	}
	wait := w.WaitTime
	if wait <= 0 {
		wait = DefaultWaitTime
	}
	var (
		index      uint64 // the index to block on next
		lastIndex  uint64 // the index of the last result seen, 0 before the first
		lastResult any
		seen       bool // a result was handed to Handler
		failures   int
	)
	for ctx.Err() == nil {
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: w.Stale}).WithContext(ctx)
		result, meta, err := w.Query(opts)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && meta == nil {
			err = errNoMeta
		}
		if err != nil {
			failures++
			delay := backoff(failures)
			logger.Error("watch query failed", "watch", w.Name, "error", err, "failures", failures, "retry_in", delay)
			index = 0
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		failures = 0
		got := max(meta.LastIndex, 1)
		switch {
		case seen && got == lastIndex && index != 0:
			continue // the wait elapsed (or a spurious wake-up): no change
		case got < lastIndex && !w.OpaqueIndex:
			logger.Debug("watch index went backwards; resetting", "watch", w.Name, "from", lastIndex, "to", got)
			index = 0
		default:
			index = got
		}
		lastIndex = got
		if seen && !changed(lastResult, result) {
			continue
		}
		seen, lastResult = true, result
		w.Handler(got, result)
	}
	return nil
}

// errNoMeta stands for a query that returned neither metadata nor an error (a bug in a
// Query); it is treated like a failed query.
var errNoMeta = errors.New("confsync: query returned no metadata")

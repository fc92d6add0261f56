package servicewatch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
)

// runService is the loop of one service: a blocking query for its passing instances,
// storing and announcing every answer that differs from the previous one.
func (w *Watcher) runService(ctx context.Context, s *watch) {
	defer w.wg.Done()
	defer close(s.done)
	health := w.cfg.Client.Health()
	w.poll(ctx, w.cfg.Logger.With("service", s.name), func(opts *api.QueryOptions) (*api.QueryMeta, error) {
		entries, meta, err := health.Service(s.name, "", true, opts)
		if err != nil {
			s.lastErr.Store(&err)
			return nil, err
		}
		list := instances(entries)
		if prev := s.list.Load(); prev != nil && equalInstances(*prev, list) {
			return meta, nil // a timeout, or a change elsewhere in the index's scope
		}
		first := s.list.Load() == nil
		s.list.Store(&list)
		if first {
			close(s.ready)
		}
		w.notify(s.name, list)
		return meta, nil
	})
}

// poll runs query as a blocking-query loop until ctx ends, following Consul's
// guidance for blocking-query clients: the index of each answer is the next request's
// WaitIndex; an index of 0 is taken as 1 (0 would not block); an index that went
// backwards (a snapshot restore, a new cluster) resets to 0 so that the next answer is
// a fresh read. Errors back off with jitter, and so does an answer that returned at once
// without a new index (a server or proxy that does not block), so the loop never spins.
func (w *Watcher) poll(ctx context.Context, log *slog.Logger, query func(*api.QueryOptions) (*api.QueryMeta, error)) {
	var index uint64
	fails := 0       // consecutive errors or non-blocking answers: the backoff step
	failing := false // the last request failed: log the recovery
	for {
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: w.cfg.Wait, AllowStale: w.cfg.Stale}).WithContext(ctx)
		start := time.Now()
		meta, err := query(opts)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fails++
			lvl := slog.LevelDebug
			if !failing {
				lvl = slog.LevelWarn
			}
			failing = true
			d := w.backoff(fails)
			log.Log(ctx, lvl, "blocking query failed; retrying", "err", err, "retry_in", d)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if failing {
			log.Info("blocking query recovered", "after_failures", fails)
			failing = false
		}
		prev := index
		index = nextIndex(prev, meta.LastIndex)
		if prev != 0 && max(meta.LastIndex, 1) <= prev && time.Since(start) < w.cfg.Wait/2 {
			fails++
			d := w.backoff(fails)
			log.Debug("blocking query returned at once without a new index; waiting", "index", meta.LastIndex, "retry_in", d)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		fails = 0
	}
}

// nextIndex is the WaitIndex that follows an answer with index got to a request with
// index prev: an index of 0 (which would not block) counts as 1, and one that went
// backwards resets to 0.
func nextIndex(prev, got uint64) uint64 {
	got = max(got, 1)
	if got < prev {
		return 0
	}
	return got
}

// backoff is the wait after the n-th consecutive failure (n >= 1): MinBackoff doubled
// n-1 times, capped at MaxBackoff, drawn at random from the upper half.
func (w *Watcher) backoff(n int) time.Duration {
	d := w.cfg.MinBackoff
	for i := 1; i < n && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends, reporting whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package authn

import (
	"context"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"
)

// KVReader is the part of the KV store authentication needs: JWKS documents and API
// keys. Both calls are blocking queries in Consul's sense: with waitIndex 0 they answer
// at once; otherwise they wait until the store's index passes waitIndex (the data may
// or may not have changed), the store's own wait limit passes, or ctx ends. The index
// returned is the one to wait on next. Implementations must be safe for concurrent use.
type KVReader interface {
	// Get returns the value at key, or nil if there is none.
	Get(ctx context.Context, key string, waitIndex uint64) (value []byte, index uint64, err error)
	// List returns the values of the keys under prefix, by full key.
	List(ctx context.Context, prefix string, waitIndex uint64) (values map[string][]byte, index uint64, err error)
}

// ConsulKV reads a Consul-compatible KV store (a wolke or Consul agent) through
// consul/api.
type ConsulKV struct {
	kv *api.KV
	// Wait is the longest a blocking query waits; the agent's limit (default 5m) is
	// used when zero.
	Wait time.Duration
}

var _ KVReader = (*ConsulKV)(nil)

// NewConsulKV returns a KVReader on client.
func NewConsulKV(client *api.Client) *ConsulKV { return &ConsulKV{kv: client.KV()} }

func (c *ConsulKV) opts(ctx context.Context, waitIndex uint64) *api.QueryOptions {
	return (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: c.Wait}).WithContext(ctx)
}

// Get implements KVReader.
func (c *ConsulKV) Get(ctx context.Context, key string, waitIndex uint64) ([]byte, uint64, error) {
	p, meta, err := c.kv.Get(key, c.opts(ctx, waitIndex))
	if err != nil {
		return nil, 0, err
	}
	if p == nil {
		return nil, meta.LastIndex, nil
	}
	return p.Value, meta.LastIndex, nil
}

// List implements KVReader.
func (c *ConsulKV) List(ctx context.Context, prefix string, waitIndex uint64) (map[string][]byte, uint64, error) {
	pairs, meta, err := c.kv.List(prefix, c.opts(ctx, waitIndex))
	if err != nil {
		return nil, 0, err
	}
	m := make(map[string][]byte, len(pairs))
	for _, p := range pairs {
		m[p.Key] = p.Value
	}
	return m, meta.LastIndex, nil
}

// watch runs blocking queries until ctx ends: fetch is called with the last index and
// returns the next one. Errors are logged and retried with a backoff (50ms doubling to
// 5s), so a watcher outlives an agent restart; an unchanged index answered at once is
// followed by a 50ms pause, in case the store does not block. The index rules are Consul's: an index
// that goes backwards restarts from 0, and 0 is never waited on.
func watch(ctx context.Context, log *slog.Logger, what string, index uint64, fetch func(ctx context.Context, index uint64) (uint64, error)) {
	const minBackoff, maxBackoff = 50 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		next, err := fetch(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("blocking query failed; retrying", "what", what, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			index = 0
			continue
		}
		backoff = minBackoff
		if index != 0 && next == index && time.Since(start) < minBackoff/5 {
			// A store that does not block would have us spin: pace it.
			select {
			case <-ctx.Done():
				return
			case <-time.After(minBackoff):
			}
		}
		switch {
		case next < index:
			index = 0
		case next == 0:
			index = 1
		default:
			index = next
		}
	}
}

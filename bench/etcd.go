package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

// etcdKV drives etcd's v3 KV API over one or more gRPC connections. One connection
// multiplexes every request (HTTP/2); more spread the work of the server's and the
// client's connection goroutines, the way etcd's own benchmark tool does with -conns.
//
// With several endpoints (the members of a cluster), each client keeps a connection to
// every member and sends each request to the next ready one (clientv3's round-robin
// balancer), so the load spreads over all members and leaves a member that died;
// TestEtcdDriverCluster checks both.
type etcdKV struct {
	clients []*clientv3.Client
	next    atomic.Uint64
}

var _ benchkv.Driver = (*etcdKV)(nil)

func newEtcdKV(endpoints []string, conns int, dialTimeout time.Duration) (*etcdKV, error) {
	d := &etcdKV{}
	for range conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: dialTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
		}
		d.clients = append(d.clients, c)
		// The client connects lazily; asking for the status now makes an unreachable
		// etcd fail within dialTimeout. One member that answers is enough.
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		for _, ep := range endpoints {
			if _, err = c.Status(ctx, ep); err == nil {
				break
			}
		}
		cancel()
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("etcd at %s: %w", strings.Join(endpoints, ","), err)
		}
	}
	return d, nil
}

func (d *etcdKV) client() *clientv3.Client {
	return d.clients[d.next.Add(1)%uint64(len(d.clients))]
}

// Put writes key; etcd acknowledges once the entry is committed by a quorum.
func (d *etcdKV) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.client().Put(ctx, key, string(value))
	return err
}

// Get reads key. etcd has no counterpart of Consul's default mode (the leader's state
// without a quorum check), so default and consistent both take etcd's default, a
// linearizable read; stale is a serializable read from the member's local state.
func (d *etcdKV) Get(ctx context.Context, key string, mode benchkv.ReadMode) error {
	var opts []clientv3.OpOption
	if mode == benchkv.ReadStale {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := d.client().Get(ctx, key, opts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return benchkv.ErrNotFound
	}
	return nil
}

// Close closes every connection.
func (d *etcdKV) Close() error {
	var first error
	for _, c := range d.clients {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Package benchkv generates load against a key/value store and measures it: throughput
// and a latency distribution exact enough for p99.9. The store is reached through a
// small Driver, so the same workload and statistics drive wolke (Consul's HTTP KV API)
// and etcd, and their figures can be compared within one run.
package benchkv

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Driver.Get for a key that does not exist. Run counts such
// reads as misses, not errors: a read of a missing key is still a completed read, but a
// get workload with many misses did not measure what it meant to.
var ErrNotFound = errors.New("benchkv: key not found")

// Driver performs single key operations against one store.
//
// Run calls Put and Get from Config.Concurrency goroutines at once, so both must be safe
// for concurrent use, and each call should block until the store has answered: the
// time a call takes is the latency that Run records. Put must not retain value after it
// returns (the caller reuses the buffer). Run never calls Close; whoever created the
// driver closes it.
type Driver interface {
	// Put writes value under key and returns once the store has acknowledged the write.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key with the given consistency and discards the value. A missing key
	// returns ErrNotFound (possibly wrapped).
	Get(ctx context.Context, key string, mode ReadMode) error
	// Close releases connections.
	Close() error
}

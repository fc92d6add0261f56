// Package authntest has an in-memory KV store for the tests of authn and of the
// gateway.
package authntest

import (
	"context"
	"strings"
	"sync"

	"github.com/wolke-platform/wolke/internal/authn"
)

// MemKV is an in-memory authn.KVReader with Consul's blocking-query behaviour: one
// index for the whole store, bumped by every Put and Delete. The zero value is empty
// and ready.
type MemKV struct {
	mu      sync.Mutex
	index   uint64
	data    map[string][]byte
	changed chan struct{} // closed and replaced on every change
}

var _ authn.KVReader = (*MemKV)(nil)

func (m *MemKV) init() {
	if m.data == nil {
		m.data, m.changed, m.index = map[string][]byte{}, make(chan struct{}), 1
	}
}

// Put stores value at key.
func (m *MemKV) Put(key string, value []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	m.data[key] = append([]byte(nil), value...)
	m.bump()
}

// Delete removes key.
func (m *MemKV) Delete(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	delete(m.data, key)
	m.bump()
}

func (m *MemKV) bump() {
	m.index++
	close(m.changed)
	m.changed = make(chan struct{})
}

// wait blocks until the index passes waitIndex or ctx ends, and returns with m.mu held.
func (m *MemKV) wait(ctx context.Context, waitIndex uint64) error {
	m.mu.Lock()
	m.init()
	for waitIndex != 0 && m.index <= waitIndex {
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		m.mu.Lock()
	}
	return nil
}

// Get implements authn.KVReader.
func (m *MemKV) Get(ctx context.Context, key string, waitIndex uint64) ([]byte, uint64, error) {
	if err := m.wait(ctx, waitIndex); err != nil {
		return nil, 0, err
	}
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return nil, m.index, nil
	}
	return append([]byte(nil), v...), m.index, nil
}

// List implements authn.KVReader.
func (m *MemKV) List(ctx context.Context, prefix string, waitIndex uint64) (map[string][]byte, uint64, error) {
	if err := m.wait(ctx, waitIndex); err != nil {
		return nil, 0, err
	}
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.data {
		if strings.HasPrefix(k, prefix) {
			out[k] = append([]byte(nil), v...)
		}
	}
	return out, m.index, nil
}

package state

import (
	"context"
	"sync"

	"github.com/hashicorp/go-memdb"
)

// WatchSet collects what a read depended on, so a blocking query can sleep until one of
// those things changes. It is not safe for concurrent use; one query owns one set.
type WatchSet struct {
	chans memdb.WatchSet
	kv    *kvWatch
	slots []*watchSlot
}

// NewWatchSet returns an empty set.
func NewWatchSet() *WatchSet { return &WatchSet{chans: memdb.NewWatchSet()} }

// Add adds a channel that closes on change (the store's AbandonCh, for one).
func (ws *WatchSet) Add(ch <-chan struct{}) {
	if ws != nil {
		ws.chans.Add(ch)
	}
}

// Wait blocks until a watched thing changes (nil) or ctx ends (its error).
func (ws *WatchSet) Wait(ctx context.Context) error { return ws.chans.WatchCtx(ctx) }

// Chan returns a channel that receives once when a watched thing changes or ctx ends,
// for callers that wait on several things in a select.
func (ws *WatchSet) Chan(ctx context.Context) <-chan error { return ws.chans.WatchCh(ctx) }

// Release drops the set's registrations; call it when the query is done, fired or not,
// so that watches on keys nobody writes do not pile up.
func (ws *WatchSet) Release() {
	if ws == nil {
		return
	}
	for _, s := range ws.slots {
		ws.kv.release(s)
	}
	ws.slots = nil
}

// kvWatch wakes readers of exact keys and of prefixes when a key under them is written.
// memdb's own radix watches cannot do this for keys that do not exist yet: the closest
// radix node of a missing key often covers much of the tree (even the root), so every
// unrelated write would wake such readers (Consul's consul#9449).
type kvWatch struct {
	mu     sync.Mutex
	exact  map[string]*watchSlot
	prefix map[string]*watchSlot
	// lens counts registered prefixes by length, so a write checks only the lengths in
	// use instead of every prefix of its key.
	lens map[int]int
}

type watchSlot struct {
	key    string
	prefix bool
	ch     chan struct{}
	refs   int
	fired  bool
}

func newKVWatch() *kvWatch {
	return &kvWatch{exact: map[string]*watchSlot{}, prefix: map[string]*watchSlot{}, lens: map[int]int{}}
}

// watchKey registers ws for writes of key.
func (w *kvWatch) watchKey(ws *WatchSet, key string) { w.register(ws, key, false) }

// watchPrefix registers ws for writes of any key starting with prefix.
func (w *kvWatch) watchPrefix(ws *WatchSet, prefix string) { w.register(ws, prefix, true) }

func (w *kvWatch) register(ws *WatchSet, k string, prefix bool) {
	if ws == nil {
		return
	}
	w.mu.Lock()
	m := w.exact
	if prefix {
		m = w.prefix
	}
	s := m[k]
	if s == nil {
		s = &watchSlot{key: k, prefix: prefix, ch: make(chan struct{})}
		m[k] = s
		if prefix {
			w.lens[len(k)]++
		}
	}
	s.refs++
	w.mu.Unlock()
	ws.kv = w
	ws.slots = append(ws.slots, s)
	ws.chans.Add(s.ch)
}

func (w *kvWatch) release(s *watchSlot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.refs--
	if s.refs == 0 && !s.fired {
		w.remove(s)
	}
}

// remove drops a slot from the maps; the caller holds mu.
func (w *kvWatch) remove(s *watchSlot) {
	if s.prefix {
		delete(w.prefix, s.key)
		if w.lens[len(s.key)]--; w.lens[len(s.key)] == 0 {
			delete(w.lens, len(s.key))
		}
		return
	}
	delete(w.exact, s.key)
}

func (w *kvWatch) fire(s *watchSlot) {
	s.fired = true
	close(s.ch)
	w.remove(s)
}

// notify wakes the readers of the written keys.
func (w *kvWatch) notify(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if s := w.exact[k]; s != nil {
			w.fire(s)
		}
		for l := range w.lens {
			if l > len(k) {
				continue
			}
			if s := w.prefix[k[:l]]; s != nil {
				w.fire(s)
			}
		}
	}
}

// notifyAll wakes every reader (the state was replaced wholesale).
func (w *kvWatch) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.exact {
		w.fire(s)
	}
	for _, s := range w.prefix {
		w.fire(s)
	}
}

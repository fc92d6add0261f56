// Package servicewatch keeps the passing instances of Consul services current with
// blocking queries against a wolke (or Consul) agent, for the edge gateway (every
// service, following the catalog) and the chassis client (services on first use).
//
// Each watched service has one goroutine running a blocking query on
// /v1/health/service/<name>?passing; its latest answer is kept in memory, so
// [Watcher.Service] answers without network I/O after the first call, and
// [Watcher.OnChange] handlers hear of every change. [Watcher.WatchCatalog] follows
// /v1/catalog/services and starts or stops the per-service loops as services come and
// go. The loops reset the index when it goes backwards, back off with jitter after
// errors, and wait as well when an answer comes back at once without progress, so a
// misbehaving server cannot make them spin. watcher.go (lifecycle, lookups),
// loop.go (the blocking-query loop), catalog.go, instance.go.
package servicewatch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by the methods of a closed Watcher.
var ErrClosed = errors.New("servicewatch: watcher closed")

// Watcher keeps the passing instances of the services it watches. It is safe for
// concurrent use.
type Watcher struct {
	cfg    Config
	ctx    context.Context // cancelled by Close; parent of every loop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loops and a running WatchCatalog
	closed atomic.Bool

	// watches maps service name to its loop. It is copied on write (under mu), so
	// that Service's lookup is one atomic load and a map read, without a lock
	// shared by every request.
	watches atomic.Pointer[map[string]*watch]

	mu             sync.Mutex // writers of watches and the fields below
	handlers       []func(service string, instances []Instance)
	catalogRunning bool
}

// watch is the loop of one service.
type watch struct {
	name    string
	cancel  context.CancelFunc
	ready   chan struct{}              // closed at the first answer
	done    chan struct{}              // closed when the loop has returned
	list    atomic.Pointer[[]Instance] // the latest answer; nil before the first
	lastErr atomic.Pointer[error]      // the latest error, for Service's timeout
}

// New returns a watcher that watches nothing yet. It fills zero durations of cfg with
// their defaults and panics if cfg does not pass [Config.Validate].
func New(cfg Config) *Watcher {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	w := &Watcher{cfg: cfg.withDefaults()}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.watches.Store(&map[string]*watch{})
	return w
}

// Service returns the passing instances of name, sorted by ID (then node). The first
// call for a name starts its blocking-query loop and waits, bounded by ctx, for the
// first answer; later calls answer from memory without network I/O. The returned slice
// is shared: do not modify it or its instances.
func (w *Watcher) Service(ctx context.Context, name string) ([]Instance, error) {
	for {
		if w.closed.Load() {
			return nil, ErrClosed
		}
		s := (*w.watches.Load())[name]
		if s == nil {
			var err error
			if s, err = w.start(name); err != nil {
				return nil, err
			}
		}
		if l := s.list.Load(); l != nil {
			return *l, nil
		}
		select {
		case <-s.ready:
			return *s.list.Load(), nil
		case <-s.done:
			// Stopped before its first answer (the service left the catalog, or
			// Close): look again, which starts a new loop unless closed.
		case <-ctx.Done():
			if e := s.lastErr.Load(); e != nil {
				return nil, fmt.Errorf("servicewatch: service %s: %w (last error: %w)", name, ctx.Err(), *e)
			}
			return nil, fmt.Errorf("servicewatch: service %s: no answer yet: %w", name, ctx.Err())
		}
	}
}

// OnChange registers fn, called from a watch goroutine with the new list whenever the
// passing instances of a watched service change (including its first answer, and an
// empty list when WatchCatalog stops watching a service that left the catalog), not
// on answers that change nothing. Calls for one service come one at a time and in
// order; calls for different services may run concurrently. fn must not block for
// long (it delays that service's updates), must not modify the list, and must not call
// Close.
func (w *Watcher) OnChange(fn func(service string, instances []Instance)) {
	w.mu.Lock()
	// A fresh slice, so that notify can iterate its copy without the lock.
	w.handlers = append(w.handlers[:len(w.handlers):len(w.handlers)], fn)
	w.mu.Unlock()
}

// Snapshot returns the current instances of every watched service that has answered.
// The lists are shared, as with Service.
func (w *Watcher) Snapshot() map[string][]Instance {
	out := map[string][]Instance{}
	for name, s := range *w.watches.Load() {
		if l := s.list.Load(); l != nil {
			out[name] = *l
		}
	}
	return out
}

// Close stops every loop and waits for them (and a running WatchCatalog) to return;
// no OnChange call starts after it returns. Later calls of the watcher's methods return
// ErrClosed. Close must not be called from an OnChange handler.
func (w *Watcher) Close() {
	w.mu.Lock()
	w.closed.Store(true)
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// start returns the watch of name, starting its loop if there is none.
func (w *Watcher) start(name string) (*watch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return nil, ErrClosed
	}
	if s := (*w.watches.Load())[name]; s != nil {
		return s, nil
	}
	m := maps.Clone(*w.watches.Load())
	s := w.startLocked(name)
	m[name] = s
	w.watches.Store(&m)
	return s, nil
}

// startMany starts the loops of the names not watched yet, with one copy of the map.
func (w *Watcher) startMany(names []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return
	}
	cur := *w.watches.Load()
	var m map[string]*watch
	for _, name := range names {
		if cur[name] != nil {
			continue
		}
		if m == nil {
			m = maps.Clone(cur)
		}
		m[name] = w.startLocked(name)
	}
	if m != nil {
		w.watches.Store(&m)
	}
}

// startLocked starts a loop for name. w.mu is held and the watcher is open.
func (w *Watcher) startLocked(name string) *watch {
	ctx, cancel := context.WithCancel(w.ctx)
	s := &watch{name: name, cancel: cancel, ready: make(chan struct{}), done: make(chan struct{})}
	w.wg.Add(1)
	go w.runService(ctx, s)
	return s
}

// stop ends the loop of name, waits for it, and tells the handlers that the service
// has no instances.
func (w *Watcher) stop(name string) {
	w.mu.Lock()
	s := (*w.watches.Load())[name]
	if s != nil {
		m := maps.Clone(*w.watches.Load())
		delete(m, name)
		w.watches.Store(&m)
	}
	w.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	<-s.done // its last notification is out before the empty one
	w.notify(name, nil)
}

func (w *Watcher) notify(name string, list []Instance) {
	w.mu.Lock()
	hs := w.handlers
	w.mu.Unlock()
	for _, fn := range hs {
		fn(name, list)
	}
}

package servicewatch

import (
	"context"
	"errors"
	"slices"

	"github.com/hashicorp/consul/api"
)

// ErrCatalogWatched is returned by WatchCatalog while another WatchCatalog runs.
var ErrCatalogWatched = errors.New("servicewatch: the catalog is already watched")

// WatchCatalog follows /v1/catalog/services with blocking queries and keeps a loop for
// every service present: it starts loops for new services (without waiting for their
// first answer) and stops the loops of services that left the catalog, after which
// OnChange gets an empty list for them. Services watched through Service that were
// never in the catalog are left alone. It returns ctx's error when ctx ends (the loops
// keep running until Close), ErrClosed when the watcher is closed, and
// ErrCatalogWatched if another call is running.
func (w *Watcher) WatchCatalog(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed.Load():
		w.mu.Unlock()
		return ErrClosed
	case w.catalogRunning:
		w.mu.Unlock()
		return ErrCatalogWatched
	}
	w.catalogRunning = true
	w.wg.Add(1)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.catalogRunning = false
		w.mu.Unlock()
		w.wg.Done()
	}()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.ctx, cancel)()

	catalog := w.cfg.Client.Catalog()
	var known []string // the services of the previous answer, sorted
	w.poll(ctx, w.cfg.Logger.With("watch", "catalog"), func(opts *api.QueryOptions) (*api.QueryMeta, error) {
		services, meta, err := catalog.Services(opts)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(services))
		for name := range services {
			names = append(names, name)
		}
		slices.Sort(names)
		w.startMany(names)
		for _, name := range known {
			if _, ok := slices.BinarySearch(names, name); !ok {
				w.stop(name)
			}
		}
		known = names
		return meta, nil
	})
	if w.closed.Load() {
		return ErrClosed
	}
	return parent.Err()
}

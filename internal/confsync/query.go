package confsync

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrInvalidParams is wrapped by the errors of [NewWatch] for parameters that do not fit
// the watch type (a usage error).
var ErrInvalidParams = errors.New("confsync: invalid watch parameters")

// WatchTypes are the watch types of `consul watch`, in its order.
var WatchTypes = []string{"key", "keyprefix", "services", "nodes", "service", "checks", "event"}

// Params select what a watch of `consul watch`'s types reads. Which fields a type takes:
//
//	key        Key (required)
//	keyprefix  Prefix (required)
//	services   -
//	nodes      -
//	service    Service (required), Tags (all must match), PassingOnly
//	checks     Service or State (not both; neither means State "any")
//	event      Name (optional: all events without it)
//
// A field set for a type that does not take it is an error, as in consul/api/watch.
type Params struct {
	Type        string
	Key         string
	Prefix      string
	Service     string
	Tags        []string
	PassingOnly bool
	State       string
	Name        string
}

// NewWatch returns the watch for p, reading through c: Query, Name and OpaqueIndex are
// set; the caller sets Handler and, if it wants, the other fields. The result the handler
// receives is the value consul/api decodes for the type, so encoding/json writes it in
// Consul's shape:
//
//	key        *api.KVPair (nil when the key does not exist)
//	keyprefix  api.KVPairs (nil when no key has the prefix)
//	services   map[string][]string          (GET /v1/catalog/services)
//	nodes      []*api.Node                  (GET /v1/catalog/nodes)
//	service    []*api.ServiceEntry          (GET /v1/health/service/:name)
//	checks     api.HealthChecks             (GET /v1/health/state/:state or /v1/health/checks/:service)
//	event      []*api.UserEvent             (GET /v1/event/list; only the events since the last result)
func NewWatch(c *api.Client, p Params) (*Watch, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	w := &Watch{Name: p.describe()}
	switch p.Type {
	case "key":
		w.Query = kvGetQuery(c, p.Key)
	case "keyprefix":
		w.Query = kvListQuery(c, p.Prefix)
	case "services":
		w.Query = func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			return wrap(c.Catalog().Services(opts))
		}
	case "nodes":
		w.Query = func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			return wrap(c.Catalog().Nodes(opts))
		}
	case "service":
		w.Query = func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			return wrap(c.Health().ServiceMultipleTags(p.Service, p.Tags, p.PassingOnly, opts))
		}
	case "checks":
		service, state := p.Service, p.State
		if service == "" && state == "" {
			state = "any"
		}
		w.Query = func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			if state != "" {
				return wrap(c.Health().State(state, opts))
			}
			return wrap(c.Health().Checks(service, opts))
		}
	case "event":
		w.Query, w.OpaqueIndex = eventQuery(c, p.Name), true
		// The query already keeps only new events: any is a change, none is not (the
		// list's index can move without a new event of this name).
		w.Changed = func(_, result any) bool { return len(result.([]*api.UserEvent)) > 0 }
	}
	return w, nil
}

func wrap[T any](v T, meta *api.QueryMeta, err error) (any, *api.QueryMeta, error) {
	if err != nil {
		return nil, nil, err
	}
	return v, meta, nil
}

func kvGetQuery(c *api.Client, key string) Query {
	return func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
		return wrap(c.KV().Get(key, opts))
	}
}

func kvListQuery(c *api.Client, prefix string) Query {
	return func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
		return wrap(c.KV().List(prefix, opts))
	}
}

// eventQuery lists the events (of one name, or all) and keeps those after the newest one
// of its previous answer, as consul/api/watch does: the first answer has every event the
// agent holds, later ones only the new events. When the previous newest event is no
// longer in the agent's buffer, every event is new.
func eventQuery(c *api.Client, name string) Query {
	var prev uint64 // index (newest event) of the previous answer; only the Watch goroutine calls
	return func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
		ev := c.Event()
		events, meta, err := ev.List(name, opts)
		if err != nil {
			return nil, nil, err
		}
		if prev != 0 {
			for i, e := range events {
				if ev.IDToIndex(e.ID) == prev {
					events = events[i+1:]
					break
				}
			}
		}
		prev = meta.LastIndex
		return events, meta, nil
	}
}

var healthStates = []string{api.HealthAny, api.HealthPassing, api.HealthWarning, api.HealthCritical}

func (p Params) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidParams, fmt.Sprintf(format, args...))
	}
	allowed := map[string][]string{
		"key":       {"key"},
		"keyprefix": {"prefix"},
		"services":  nil,
		"nodes":     nil,
		"service":   {"service", "tag", "passingonly"},
		"checks":    {"service", "state"},
		"event":     {"name"},
	}
	ok, known := allowed[p.Type]
	if p.Type == "" {
		return bad("a watch type is required (one of %s)", strings.Join(WatchTypes, ", "))
	}
	if !known {
		return bad("unsupported watch type %q (want one of %s)", p.Type, strings.Join(WatchTypes, ", "))
	}
	set := map[string]bool{
		"key": p.Key != "", "prefix": p.Prefix != "", "service": p.Service != "",
		"tag": len(p.Tags) > 0, "passingonly": p.PassingOnly, "state": p.State != "", "name": p.Name != "",
	}
	var extra []string
	for _, f := range []string{"key", "prefix", "service", "tag", "passingonly", "state", "name"} {
		if set[f] && !slices.Contains(ok, f) {
			extra = append(extra, "-"+f)
		}
	}
	if len(extra) > 0 {
		return bad("watch type %s does not take %s", p.Type, strings.Join(extra, ", "))
	}
	switch {
	case p.Type == "key" && p.Key == "":
		return bad("watch type key needs a key")
	case p.Type == "keyprefix" && p.Prefix == "":
		return bad("watch type keyprefix needs a prefix")
	case p.Type == "service" && p.Service == "":
		return bad("watch type service needs a service name")
	case p.Type == "checks" && p.Service != "" && p.State != "":
		return bad("watch type checks takes a service or a state, not both")
	case p.State != "" && !slices.Contains(healthStates, p.State):
		return bad("state %q: want one of %s", p.State, strings.Join(healthStates, ", "))
	}
	return nil
}

// describe names the watch for log lines.
func (p Params) describe() string {
	switch p.Type {
	case "key":
		return "key " + p.Key
	case "keyprefix":
		return "keyprefix " + p.Prefix
	case "service":
		return "service " + p.Service
	case "checks":
		if p.Service != "" {
			return "checks of service " + p.Service
		}
		if p.State != "" {
			return "checks in state " + p.State
		}
		return "checks"
	case "event":
		if p.Name != "" {
			return "event " + p.Name
		}
		return "events"
	}
	return p.Type
}

package confsync

import (
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/hashicorp/consul/api"
)

// depKind is the kind of data a template function reads.
type depKind uint8

const (
	depKey      depKind = iota + 1 // one key: key, keyOrDefault, keyExists
	depKeyList                     // every key under a prefix: ls, tree
	depHealth                      // the instances of a service: service
	depServices                    // the catalog's service names: services
)

// dep identifies one piece of data templates read; templates reading the same dep share
// one blocking query. It is comparable and used as a map key.
type dep struct {
	kind    depKind
	name    string // key, prefix (ending in "/" unless empty) or service name
	tag     string // service: only instances with this tag
	dc      string // service, services: the datacenter ("" for the agent's)
	passing bool   // service: ask the agent for passing instances only (?passing)
}

func (d dep) String() string {
	at := ""
	if d.dc != "" {
		at = "@" + d.dc
	}
	switch d.kind {
	case depKey:
		return "key " + d.name
	case depKeyList:
		return "prefix " + d.name
	case depHealth:
		s := "service " + d.name + at
		if d.tag != "" {
			s += " tag " + d.tag
		}
		if d.passing {
			s += " (passing)"
		}
		return s
	case depServices:
		return "services" + at
	}
	return "unknown"
}

// query returns the blocking read for d.
func (d dep) query(c *api.Client) Query {
	switch d.kind {
	case depKey:
		return kvGetQuery(c, d.name)
	case depKeyList:
		return kvListQuery(c, d.name)
	case depHealth:
		return func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			opts.Datacenter = d.dc
			return wrap(c.Health().Service(d.name, d.tag, d.passing, opts))
		}
	default: // depServices
		return func(opts *api.QueryOptions) (any, *api.QueryMeta, error) {
			opts.Datacenter = d.dc
			return wrap(c.Catalog().Services(opts))
		}
	}
}

// KeyPair is an element of what ls and tree return (consul-template's shape).
type KeyPair struct {
	Path        string // the full key
	Key         string // the key relative to the prefix
	Value       string
	Flags       uint64
	Session     string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
}

// HealthService is an element of what service returns: one instance of the service on
// one node, flattened as consul-template does.
type HealthService struct {
	Node                   string
	NodeID                 string
	NodeAddress            string
	NodeDatacenter         string
	NodeTaggedAddresses    map[string]string
	NodeMeta               map[string]string
	ID                     string
	Name                   string
	Kind                   string
	Address                string // the service's address, or the node's when it has none
	Port                   int
	Tags                   []string
	ServiceMeta            map[string]string
	ServiceTaggedAddresses map[string]api.ServiceAddress
	Weights                api.AgentWeights
	Checks                 api.HealthChecks
	Status                 string // aggregated: passing, warning, critical or maintenance
}

// CatalogSnippet is an element of what services returns.
type CatalogSnippet struct {
	Name string
	Tags []string // sorted, without duplicates
}

// renderState is what one execution of a template reads and records.
type renderState struct {
	data    map[dep]any      // the data received so far; a missing entry has not arrived
	used    map[dep]struct{} // every dep the template asked for
	missing []dep            // deps without (usable) data: the render is incomplete
	env     func(string) string
}

// lookup registers d as used and returns its data, or false when there is none yet (the
// render is then incomplete).
func (s *renderState) lookup(d dep) (any, bool) {
	s.used[d] = struct{}{}
	v, ok := s.data[d]
	if !ok {
		s.missing = append(s.missing, d)
	}
	return v, ok
}

// funcMap returns the template functions; they read *cur, which the runner points at a
// fresh renderState before each execution (a template executes on one goroutine at a
// time).
func funcMap(cur **renderState) template.FuncMap {
	return template.FuncMap{
		// key returns the value of a key. Like consul-template, a key that does not
		// exist holds the template back: nothing is written until it exists.
		"key": func(key string) string {
			s := *cur
			d := dep{kind: depKey, name: normKey(key)}
			v, ok := s.lookup(d)
			if !ok {
				return ""
			}
			p := v.(*api.KVPair)
			if p == nil {
				s.missing = append(s.missing, d)
				return ""
			}
			return string(p.Value)
		},
		// keyOrDefault returns the value of a key, or def when the key does not exist;
		// it never holds the template back once the agent has answered.
		"keyOrDefault": func(key, def string) string {
			v, ok := (*cur).lookup(dep{kind: depKey, name: normKey(key)})
			if !ok {
				return def
			}
			if p := v.(*api.KVPair); p != nil {
				return string(p.Value)
			}
			return def
		},
		// keyExists reports whether a key exists.
		"keyExists": func(key string) bool {
			v, ok := (*cur).lookup(dep{kind: depKey, name: normKey(key)})
			return ok && v.(*api.KVPair) != nil
		},
		// ls returns the keys directly under a prefix (not in sub-folders).
		"ls": func(prefix string) []*KeyPair { return listPairs(*cur, prefix, false) },
		// tree returns every key under a prefix, sub-folders included (folder keys
		// ending in "/" left out).
		"tree": func(prefix string) []*KeyPair { return listPairs(*cur, prefix, true) },
		// service returns the instances of a service, "[TAG.]NAME[@DC]": by default
		// only passing ones; with a second argument "any" all of them, or those whose
		// aggregated status is in a comma-separated list ("passing,warning").
		"service": func(spec string, filter ...string) ([]*HealthService, error) {
			return services(*cur, spec, filter)
		},
		// services returns the catalog's services (name and tags), by name; an
		// optional argument "@DC" asks another datacenter.
		"services": func(dc ...string) ([]*CatalogSnippet, error) {
			return catalogServices(*cur, dc)
		},
		// env returns an environment variable of the wolke process ("" when unset).
		"env": func(name string) string { return (*cur).env(name) },
	}
}

// normKey drops a leading "/" as consul-template does (keys cannot start with one).
func normKey(k string) string { return strings.TrimLeft(k, "/") }

// normPrefix makes prefix a folder: "app" lists app/..., not app-old/....
func normPrefix(prefix string) string {
	p := normKey(prefix)
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

func listPairs(s *renderState, prefix string, recurse bool) []*KeyPair {
	p := normPrefix(prefix)
	v, ok := s.lookup(dep{kind: depKeyList, name: p})
	if !ok {
		return nil
	}
	pairs := v.(api.KVPairs)
	out := make([]*KeyPair, 0, len(pairs))
	for _, kv := range pairs {
		rel := strings.TrimPrefix(kv.Key, p)
		if rel == "" || strings.HasSuffix(rel, "/") || !recurse && strings.Contains(rel, "/") {
			continue
		}
		out = append(out, &KeyPair{
			Path: kv.Key, Key: rel, Value: string(kv.Value), Flags: kv.Flags, Session: kv.Session,
			CreateIndex: kv.CreateIndex, ModifyIndex: kv.ModifyIndex, LockIndex: kv.LockIndex,
		})
	}
	return out
}

// parseServiceSpec splits "[TAG.]NAME[@DC]"; a service name cannot contain a dot, so the
// tag is everything before the last one.
func parseServiceSpec(spec string) (name, tag, dc string, err error) {
	name = spec
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, dc = name[:i], name[i+1:]
		if dc == "" {
			return "", "", "", fmt.Errorf("service %q: empty datacenter after @", spec)
		}
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name, tag = name[i+1:], name[:i]
		if tag == "" {
			return "", "", "", fmt.Errorf("service %q: empty tag before .", spec)
		}
	}
	if name == "" {
		return "", "", "", fmt.Errorf("service %q: want [TAG.]NAME[@DC]", spec)
	}
	return name, tag, dc, nil
}

var serviceStatuses = []string{api.HealthPassing, api.HealthWarning, api.HealthCritical, api.HealthMaint}

func services(s *renderState, spec string, filter []string) ([]*HealthService, error) {
	name, tag, dc, err := parseServiceSpec(spec)
	if err != nil {
		return nil, err
	}
	var want []string // statuses to keep; nil keeps all
	passing := true
	switch {
	case len(filter) > 1:
		return nil, fmt.Errorf("service %q: at most one status filter, got %d", spec, len(filter))
	case len(filter) == 1 && strings.TrimSpace(filter[0]) == "any":
		passing = false
	case len(filter) == 1:
		passing = false
		for _, st := range strings.Split(filter[0], ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains(serviceStatuses, st) {
				return nil, fmt.Errorf("service %q: status %q: want any, or a list of %s", spec, st, strings.Join(serviceStatuses, ", "))
			}
			want = append(want, st)
		}
	}
	v, ok := s.lookup(dep{kind: depHealth, name: name, tag: tag, dc: dc, passing: passing})
	if !ok {
		return nil, nil
	}
	entries := v.([]*api.ServiceEntry)
	out := make([]*HealthService, 0, len(entries))
	for _, e := range entries {
		if e.Node == nil || e.Service == nil {
			continue
		}
		status := e.Checks.AggregatedStatus()
		if want != nil && !slices.Contains(want, status) {
			continue
		}
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, &HealthService{
			Node: e.Node.Node, NodeID: e.Node.ID, NodeAddress: e.Node.Address, NodeDatacenter: e.Node.Datacenter,
			NodeTaggedAddresses: e.Node.TaggedAddresses, NodeMeta: e.Node.Meta,
			ID: e.Service.ID, Name: e.Service.Service, Kind: string(e.Service.Kind), Address: addr, Port: e.Service.Port,
			Tags: e.Service.Tags, ServiceMeta: e.Service.Meta, ServiceTaggedAddresses: e.Service.TaggedAddresses,
			Weights: e.Service.Weights, Checks: e.Checks, Status: status,
		})
	}
	slices.SortStableFunc(out, func(a, b *HealthService) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func catalogServices(s *renderState, dcArg []string) ([]*CatalogSnippet, error) {
	dc := ""
	switch {
	case len(dcArg) > 1:
		return nil, fmt.Errorf("services: at most one argument (@DC), got %d", len(dcArg))
	case len(dcArg) == 1:
		dc = strings.TrimPrefix(dcArg[0], "@")
		if dc == "" {
			return nil, fmt.Errorf("services: empty datacenter")
		}
	}
	v, ok := s.lookup(dep{kind: depServices, dc: dc})
	if !ok {
		return nil, nil
	}
	m := v.(map[string][]string)
	out := make([]*CatalogSnippet, 0, len(m))
	for name, tags := range m {
		t := slices.Clone(tags)
		slices.Sort(t)
		out = append(out, &CatalogSnippet{Name: name, Tags: slices.Compact(t)})
	}
	slices.SortFunc(out, func(a, b *CatalogSnippet) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

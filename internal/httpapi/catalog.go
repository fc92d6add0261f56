package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// JSON shapes of the catalog and health API, field for field Consul's.

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type weightsJSON struct {
	Passing int
	Warning int
}

type agentServiceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]state.ServiceAddress
	Meta              map[string]string
	Port              int
	Weights           weightsJSON
	EnableTagOverride bool
	Kind              string
	Namespace         string `json:",omitempty"`
	CreateIndex       uint64
	ModifyIndex       uint64
}

type healthCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Definition  map[string]string
	CreateIndex uint64
	ModifyIndex uint64
}

type catalogServiceJSON struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]state.ServiceAddress
	ServiceWeights           weightsJSON
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	ServiceKind              string
	ServiceProxy             map[string]any
	ServiceConnect           map[string]any
	CreateIndex              uint64
	ModifyIndex              uint64
}

type serviceEntryJSON struct {
	Node    nodeJSON
	Service agentServiceJSON
	Checks  []healthCheckJSON
}

func nonNilTags(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

func toNodeJSON(n *state.Node) nodeJSON {
	return nodeJSON{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
		TaggedAddresses: n.TaggedAddresses, Meta: n.Meta, CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex}
}

func toServiceJSON(s *state.Service) agentServiceJSON {
	return agentServiceJSON{ID: s.ID, Service: s.Service, Tags: nonNilTags(s.Tags), Address: s.Address,
		TaggedAddresses: s.TaggedAddresses, Meta: s.Meta, Port: s.Port,
		Weights:           weightsJSON{Passing: s.Weights.Passing, Warning: s.Weights.Warning},
		EnableTagOverride: s.EnableTagOverride, Kind: s.Kind, CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex}
}

func toCheckJSON(c *state.Check) healthCheckJSON {
	def := map[string]string{}
	if c.Interval != "" {
		def["Interval"] = c.Interval
	}
	if c.Timeout != "" {
		def["Timeout"] = c.Timeout
	}
	return healthCheckJSON{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: nonNilTags(c.ServiceTags),
		Type: c.Type, Definition: def, CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex}
}

func toChecksJSON(cs []*state.Check) []healthCheckJSON {
	out := make([]healthCheckJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, toCheckJSON(c))
	}
	return out
}

// registerJSON is the body of PUT /v1/catalog/register.
type registerJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	Service         *struct {
		ID                string
		Service           string
		Tags              []string
		Address           string
		TaggedAddresses   map[string]state.ServiceAddress
		Meta              map[string]string
		Port              int
		Weights           *weightsJSON
		EnableTagOverride bool
		Kind              string
	}
	Check          *checkRegJSON
	Checks         []checkRegJSON
	SkipNodeUpdate bool
}

type checkRegJSON struct {
	Node       string
	CheckID    string
	ID         string
	Name       string
	Notes      string
	Status     string
	ServiceID  string
	Output     string
	Type       string
	Definition map[string]any
}

// catalog serves /v1/catalog/<rest>.
func (s *Server) catalog(w http.ResponseWriter, r *http.Request, rest string) {
	verb, arg, _ := strings.Cut(rest, "/")
	var err error
	switch verb {
	case "register", "deregister":
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			methodNotAllowed(w, r.Method, "PUT")
			return
		}
		if verb == "register" {
			err = s.catalogRegister(w, r)
		} else {
			err = s.catalogDeregister(w, r)
		}
	case "datacenters", "nodes", "services", "service", "node":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r.Method, "GET")
			return
		}
		err = s.catalogRead(w, r, verb, arg)
	default:
		err = notFound("Invalid URL path: not a recognized HTTP API endpoint")
	}
	if err != nil && r.Context().Err() == nil {
		writeError(w, err)
	}
}

func readJSONBody(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return badRequest("Failed to read the request body: %v", err)
	}
	if int64(len(body)) > limit {
		return tooLarge("Request body too large, max size: %d bytes", limit)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("Request decode failed: %v", err)
	}
	return nil
}

func (s *Server) catalogRegister(w http.ResponseWriter, r *http.Request) error {
	var in registerJSON
	if err := readJSONBody(r, 1<<20, &in); err != nil {
		return err
	}
	if in.Node == "" {
		return badRequest("Must provide node")
	}
	if in.Address == "" && !in.SkipNodeUpdate {
		return badRequest("Must provide address if SkipNodeUpdate is not set")
	}
	req := state.RegisterRequest{
		Node: state.Node{ID: in.ID, Node: in.Node, Address: in.Address, Datacenter: s.backend.Self().Datacenter,
			TaggedAddresses: in.TaggedAddresses, Meta: in.NodeMeta},
		SkipNodeUpdate: in.SkipNodeUpdate,
	}
	if sv := in.Service; sv != nil {
		if sv.Service == "" {
			return badRequest("Must provide service name")
		}
		if sv.Port < 0 || sv.Port > 65535 {
			return badRequest("Invalid service port %d", sv.Port)
		}
		id := sv.ID
		if id == "" {
			id = sv.Service
		}
		wt := state.Weights{Passing: 1, Warning: 1}
		if sv.Weights != nil {
			wt = state.Weights{Passing: sv.Weights.Passing, Warning: sv.Weights.Warning}
		}
		req.Service = &state.Service{ID: id, Service: sv.Service, Tags: sv.Tags, Address: sv.Address,
			TaggedAddresses: sv.TaggedAddresses, Meta: sv.Meta, Port: sv.Port, Weights: wt,
			EnableTagOverride: sv.EnableTagOverride, Kind: sv.Kind}
	}
	checks := in.Checks
	if in.Check != nil {
		checks = append([]checkRegJSON{*in.Check}, checks...)
	}
	for _, c := range checks {
		id := c.CheckID
		if id == "" {
			id = c.ID
		}
		if id == "" {
			id = c.Name
		}
		if id == "" {
			return badRequest("Must provide a CheckID or Name for each check")
		}
		switch c.Status {
		case "", state.HealthPassing, state.HealthWarning, state.HealthCritical:
		default:
			return badRequest("Invalid check status %q", c.Status)
		}
		def := state.Check{CheckID: id, Name: c.Name, Notes: c.Notes, Status: c.Status, ServiceID: c.ServiceID,
			Output: c.Output, Type: c.Type}
		if v, ok := c.Definition["Interval"].(string); ok {
			def.Interval = v
		}
		if v, ok := c.Definition["Timeout"].(string); ok {
			def.Timeout = v
		}
		req.Checks = append(req.Checks, def)
	}
	return s.applyTrue(w, r, command.Register, &req)
}

func (s *Server) catalogDeregister(w http.ResponseWriter, r *http.Request) error {
	var in command.DeregisterRequest
	if err := readJSONBody(r, 64<<10, &in); err != nil {
		return err
	}
	if in.Node == "" {
		return badRequest("Must provide node")
	}
	return s.applyTrue(w, r, command.Deregister, &in)
}

// applyTrue replicates a command and answers true.
func (s *Server) applyTrue(w http.ResponseWriter, r *http.Request, t command.Type, req any) error {
	cmd, err := command.Encode(t, req)
	if err != nil {
		return err
	}
	if _, _, err := s.backend.Apply(r.Context(), cmd); err != nil {
		for _, m := range errorMap {
			if errors.Is(err, m.err) {
				return err
			}
		}
		// What is left comes from the state machine refusing the request.
		return &httpError{code: http.StatusBadRequest, reason: err.Error()}
	}
	writeJSON(w, []byte("true"))
	return nil
}

// readOpts parses the common read parameters and runs a blocking query.
func (s *Server) blockingRead(w http.ResponseWriter, r *http.Request, run func(ws *state.WatchSet) (uint64, error)) error {
	opts, err := s.parseQuery(queryOf(r))
	if err != nil {
		return err
	}
	idx, err := s.blockingQuery(r.Context(), opts, run)
	if err != nil {
		return err
	}
	s.setMeta(w, idx, opts.mode)
	return nil
}

func (s *Server) catalogRead(w http.ResponseWriter, r *http.Request, verb, arg string) error {
	store := s.backend.Store()
	q := queryOf(r)
	flt, err := filterFrom(q.Get("filter"))
	if err != nil {
		return err
	}
	var out any
	switch verb {
	case "datacenters":
		writeJSONValue(w, []string{s.backend.Self().Datacenter})
		return nil
	case "nodes":
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, nodes, err := store.Nodes(ws)
			list := make([]nodeJSON, 0, len(nodes))
			for _, n := range nodes {
				list = append(list, toNodeJSON(n))
			}
			out = keep(flt, list)
			return idx, err
		})
	case "services":
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, svcs, err := store.Services(ws)
			out = svcs
			return idx, err
		})
	case "service":
		if arg == "" {
			return badRequest("Missing service name")
		}
		tags := q["tag"]
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, inst, err := store.ServiceInstances(ws, arg, tags)
			list := make([]catalogServiceJSON, 0, len(inst))
			for _, i := range inst {
				n, sv := i.Node, i.Service
				list = append(list, catalogServiceJSON{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
					TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta, ServiceID: sv.ID, ServiceName: sv.Service,
					ServiceTags: nonNilTags(sv.Tags), ServiceAddress: sv.Address, ServiceTaggedAddresses: sv.TaggedAddresses,
					ServiceWeights: weightsJSON{sv.Weights.Passing, sv.Weights.Warning}, ServiceMeta: sv.Meta,
					ServicePort: sv.Port, ServiceEnableTagOverride: sv.EnableTagOverride, ServiceKind: sv.Kind,
					ServiceProxy: map[string]any{}, ServiceConnect: map[string]any{},
					CreateIndex: sv.CreateIndex, ModifyIndex: sv.ModifyIndex})
			}
			out = keep(flt, list)
			return idx, err
		})
	case "node":
		if arg == "" {
			return badRequest("Missing node name")
		}
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, n, svcs, err := store.NodeServices(ws, arg)
			if n == nil {
				out = nil
				return idx, err
			}
			m := map[string]agentServiceJSON{}
			for _, sv := range svcs {
				m[sv.ID] = toServiceJSON(sv)
			}
			out = map[string]any{"Node": toNodeJSON(n), "Services": m}
			return idx, err
		})
	}
	if err != nil {
		return err
	}
	writeJSONValue(w, out)
	return nil
}

// health serves /v1/health/<rest>.
func (s *Server) health(w http.ResponseWriter, r *http.Request, rest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r.Method, "GET")
		return
	}
	verb, arg, _ := strings.Cut(rest, "/")
	store := s.backend.Store()
	q := queryOf(r)
	var out any
	flt, err := filterFrom(q.Get("filter"))
	switch {
	case err != nil:
	case arg == "" && (verb == "node" || verb == "checks" || verb == "service" || verb == "state"):
		err = badRequest("Missing %s name", verb)
	case verb == "node":
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, cs, err := store.NodeChecks(ws, arg)
			out = keep(flt, toChecksJSON(cs))
			return idx, err
		})
	case verb == "checks":
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			idx, cs, err := store.ServiceChecks(ws, arg)
			out = keep(flt, toChecksJSON(cs))
			return idx, err
		})
	case verb == "state":
		switch arg {
		case "any", state.HealthPassing, state.HealthWarning, state.HealthCritical:
		default:
			err = badRequest("Invalid check state %q: want any, passing, warning or critical", arg)
		}
		if err == nil {
			err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
				idx, cs, err := store.ChecksInState(ws, arg)
				out = keep(flt, toChecksJSON(cs))
				return idx, err
			})
		}
	case verb == "service":
		passing := has(q, "passing") && q.Get("passing") != "false" && q.Get("passing") != "0"
		tags := q["tag"]
		key := strings.ToLower(arg) + "\x00" + strings.Join(tags, "\x00") + "\x00" + strconv.FormatBool(passing) + "\x00" + q.Get("filter")
		var answer *sharedEntry
		err = s.blockingRead(w, r, func(ws *state.WatchSet) (uint64, error) {
			// Read before the state, so an answer is never marked current as of a
			// count later than what it saw.
			commits := store.Commits()
			if ws == nil { // not blocking: nothing to watch
				if e, ok := s.shared.current(key, commits); ok {
					answer = e
					return e.index, nil
				}
			}
			if idx := store.ServiceIndex(ws, arg); idx > 0 {
				if e, ok := s.shared.get(key, idx); ok {
					e.commits.Store(commits)
					answer = e
					return idx, nil
				}
			}
			answer = nil
			idx, inst, err := store.ServiceInstances(ws, arg, tags)
			list := make([]serviceEntryJSON, 0, len(inst))
			for i := range inst {
				if passing && !allPassing(inst[i].Checks) {
					continue
				}
				list = append(list, serviceEntryJSON{Node: toNodeJSON(inst[i].Node),
					Service: toServiceJSON(inst[i].Service), Checks: toChecksJSON(inst[i].Checks)})
			}
			if err != nil {
				return idx, err
			}
			b, merr := json.Marshal(keep(flt, list))
			if merr != nil {
				return idx, merr
			}
			answer = s.shared.put(key, idx, b)
			answer.commits.Store(commits)
			return idx, nil
		})
		if err == nil {
			answer.write(w)
			return
		}
	default:
		err = notFound("Invalid URL path: not a recognized HTTP API endpoint")
	}
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, err)
		}
		return
	}
	writeJSONValue(w, out)
}

func allPassing(cs []*state.Check) bool {
	for _, c := range cs {
		if c.Status != state.HealthPassing {
			return false
		}
	}
	return true
}

package httpapi

import (
	"net/http"
	"strings"

	"github.com/wolke-platform/wolke/internal/health"
	"github.com/wolke-platform/wolke/internal/state"
)

// LocalAgent is what /v1/agent/service/* and /v1/agent/check/* need: the services and
// checks registered with this agent, which it runs and syncs into the catalog.
type LocalAgent interface {
	RegisterService(svc state.Service, checks []health.Definition, replaceChecks bool) error
	DeregisterService(id string) error
	LocalServices() []state.Service
	LocalChecks() []state.Check
	RegisterCheck(def health.Definition) error
	DeregisterCheck(id string) error
	UpdateTTL(id, status, output string) error
	SetMaintenance(serviceID string, enable bool, reason string) error
}

// serviceRegistration is Consul's AgentServiceRegistration body.
type serviceRegistration struct {
	ID                string
	Name              string
	Tags              []string
	Port              int
	Address           string
	TaggedAddresses   map[string]state.ServiceAddress
	EnableTagOverride bool
	Meta              map[string]string
	Weights           *weightsJSON
	Kind              string
	Check             *health.Definition
	Checks            []health.Definition
}

func (s *Server) localAgent(w http.ResponseWriter) (LocalAgent, bool) {
	la, ok := s.backend.(LocalAgent)
	if !ok {
		writeError(w, notFound("this agent runs no local services"))
	}
	return la, ok
}

// agentLocal serves /v1/agent/services, /v1/agent/service/*, /v1/agent/checks,
// /v1/agent/check/* and /v1/agent/maintenance.
func (s *Server) agentLocal(w http.ResponseWriter, r *http.Request, rest string) {
	la, ok := s.localAgent(w)
	if !ok {
		return
	}
	kind, arg, _ := strings.Cut(rest, "/")
	verb, id, _ := strings.Cut(arg, "/")
	put := r.Method == http.MethodPut || r.Method == http.MethodPost
	var err error
	switch {
	case kind == "services" && arg == "":
		s.get(w, r, func(w http.ResponseWriter, r *http.Request) {
			out := map[string]agentServiceJSON{}
			for _, sv := range la.LocalServices() {
				out[sv.ID] = toServiceJSON(&sv)
			}
			writeJSONValue(w, out)
		})
		return
	case kind == "checks" && arg == "":
		s.get(w, r, func(w http.ResponseWriter, r *http.Request) {
			out := map[string]healthCheckJSON{}
			node := s.backend.Self().NodeName
			for _, c := range la.LocalChecks() {
				c.Node = node
				out[c.CheckID] = toCheckJSON(&c)
			}
			writeJSONValue(w, out)
		})
		return
	case kind == "service" && verb == "register" && put:
		err = s.serviceRegister(w, r, la)
	case kind == "service" && verb == "deregister" && put && id != "":
		err = la.DeregisterService(id)
	case kind == "service" && verb == "maintenance" && put && id != "":
		err = s.maintenance(r, la, id)
	case kind == "maintenance" && put:
		err = s.maintenance(r, la, "")
	case kind == "service" && r.Method == http.MethodGet && arg != "" && !strings.Contains(arg, "/"):
		for _, sv := range la.LocalServices() {
			if sv.ID == arg {
				writeJSONValue(w, toServiceJSON(&sv))
				return
			}
		}
		err = notFound("unknown service ID: %s", arg)
	case kind == "check" && verb == "register" && put:
		var def health.Definition
		if err = readJSONBody(r, 64<<10, &def); err == nil {
			err = la.RegisterCheck(def)
		}
	case kind == "check" && verb == "deregister" && put && id != "":
		err = la.DeregisterCheck(id)
	case kind == "check" && (verb == "pass" || verb == "warn" || verb == "fail") && put && id != "":
		status := map[string]string{"pass": state.HealthPassing, "warn": state.HealthWarning, "fail": state.HealthCritical}[verb]
		err = la.UpdateTTL(id, status, queryOf(r).Get("note"))
	case kind == "check" && verb == "update" && put && id != "":
		var body struct{ Status, Output string }
		if err = readJSONBody(r, 64<<10, &body); err == nil {
			switch body.Status {
			case state.HealthPassing, state.HealthWarning, state.HealthCritical:
				err = la.UpdateTTL(id, body.Status, body.Output)
			default:
				err = badRequest("Invalid check status %q: want passing, warning or critical", body.Status)
			}
		}
	case !put && (verb == "register" || verb == "deregister" || verb == "pass" || verb == "warn" ||
		verb == "fail" || verb == "update" || verb == "maintenance" || kind == "maintenance"):
		methodNotAllowed(w, r.Method, "PUT")
		return
	case id == "" && (verb == "deregister" || verb == "pass" || verb == "warn" || verb == "fail" || verb == "update" || verb == "maintenance"):
		err = badRequest("Missing ID")
	default:
		err = notFound("Invalid URL path: not a recognized HTTP API endpoint")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) serviceRegister(w http.ResponseWriter, r *http.Request, la LocalAgent) error {
	var in serviceRegistration
	if err := readJSONBody(r, 1<<20, &in); err != nil {
		return err
	}
	if in.Name == "" {
		return badRequest("Missing service name")
	}
	if in.Port < 0 || in.Port > 65535 {
		return badRequest("Invalid service port %d: must be between 0 and 65535", in.Port)
	}
	svc := state.Service{ID: in.ID, Service: in.Name, Tags: in.Tags, Port: in.Port, Address: in.Address,
		TaggedAddresses: in.TaggedAddresses, EnableTagOverride: in.EnableTagOverride, Meta: in.Meta, Kind: in.Kind,
		Weights: state.Weights{Passing: 1, Warning: 1}}
	if in.Weights != nil {
		if in.Weights.Passing < 1 || in.Weights.Warning < 0 {
			return badRequest("Invalid Weights: Passing must be at least 1 and Warning at least 0")
		}
		svc.Weights = state.Weights{Passing: in.Weights.Passing, Warning: in.Weights.Warning}
	}
	var defs []health.Definition
	if in.Check != nil {
		defs = append(defs, *in.Check)
	}
	defs = append(defs, in.Checks...)
	return la.RegisterService(svc, defs, has(queryOf(r), "replace-existing-checks"))
}

func (s *Server) maintenance(r *http.Request, la LocalAgent, serviceID string) error {
	q := queryOf(r)
	v := q.Get("enable")
	if v != "true" && v != "false" {
		return badRequest("Missing value for enable: want true or false")
	}
	return la.SetMaintenance(serviceID, v == "true", q.Get("reason"))
}

// Reloader is implemented by agents that can reload their configuration.
type Reloader interface{ Reload() error }

// agentReload serves PUT /v1/agent/reload.
func (s *Server) agentReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT")
		return
	}
	rl, ok := s.backend.(Reloader)
	if !ok {
		writeError(w, notFound("this agent cannot reload"))
		return
	}
	if err := rl.Reload(); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

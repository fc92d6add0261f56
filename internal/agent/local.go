package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wolke-platform/wolke/internal/health"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/state"
)

// Interface guard: the agent serves /v1/agent/service/* and /v1/agent/check/*.
var _ httpapi.LocalAgent = (*Agent)(nil)

// local holds the services and checks registered with this agent. The agent runs the
// checks and keeps the catalog in step with this state (anti-entropy): a change is
// pushed at once, and a full sync every SyncInterval repairs whatever was lost.
type local struct {
	mu       sync.Mutex
	services map[string]*state.Service
	checks   map[string]*localCheck
	syncNow  chan struct{}
}

type localCheck struct {
	def    health.Definition
	check  state.Check
	synced bool // the catalog has this status and output
}

const (
	nodeMaintenanceID   = "_node_maintenance"
	serviceMaintenance  = "_service_maintenance:"
	defaultMaintReason  = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	defaultSMaintReason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

func newLocal() *local {
	return &local{services: map[string]*state.Service{}, checks: map[string]*localCheck{}, syncNow: make(chan struct{}, 1)}
}

func (l *local) trigger() {
	select {
	case l.syncNow <- struct{}{}:
	default:
	}
}

// RegisterService implements httpapi.LocalAgent: the service and its checks replace
// any earlier registration with the same ID.
func (a *Agent) RegisterService(svc state.Service, defs []health.Definition, replaceChecks bool) error {
	if svc.ID == "" {
		svc.ID = svc.Service
	}
	for i := range defs {
		defs[i].ServiceID = svc.ID
		if defs[i].ID == "" {
			defs[i].ID = "service:" + svc.ID
			if len(defs) > 1 {
				defs[i].ID = fmt.Sprintf("service:%s:%d", svc.ID, i+1)
			}
		}
		if defs[i].Name == "" {
			defs[i].Name = fmt.Sprintf("Service '%s' check", svc.Service)
		}
		if err := defs[i].Validate(a.cfg.EnableScriptChecks); err != nil {
			return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: fmt.Sprintf("Invalid check %q: %v", defs[i].ID, err)}
		}
	}
	a.local.mu.Lock()
	a.local.services[svc.ID] = &svc
	var stale []string
	if replaceChecks {
		for id, c := range a.local.checks {
			if c.check.ServiceID == svc.ID && !strings.HasPrefix(id, serviceMaintenance) {
				stale = append(stale, id)
			}
		}
	}
	a.local.mu.Unlock()
	for _, id := range stale {
		a.removeCheck(id)
	}
	for _, d := range defs {
		if err := a.addCheck(d); err != nil {
			return err
		}
	}
	a.local.trigger()
	return nil
}

// DeregisterService implements httpapi.LocalAgent.
func (a *Agent) DeregisterService(id string) error {
	a.local.mu.Lock()
	if _, ok := a.local.services[id]; !ok {
		a.local.mu.Unlock()
		return &httpapi.StatusError{Code: http.StatusNotFound, Reason: fmt.Sprintf("Unknown service ID %q", id)}
	}
	delete(a.local.services, id)
	var checks []string
	for cid, c := range a.local.checks {
		if c.check.ServiceID == id {
			checks = append(checks, cid)
		}
	}
	a.local.mu.Unlock()
	for _, cid := range checks {
		a.removeCheck(cid)
	}
	a.local.trigger()
	return nil
}

// LocalServices implements httpapi.LocalAgent.
func (a *Agent) LocalServices() []state.Service {
	a.local.mu.Lock()
	defer a.local.mu.Unlock()
	out := make([]state.Service, 0, len(a.local.services))
	for _, s := range a.local.services {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LocalChecks implements httpapi.LocalAgent.
func (a *Agent) LocalChecks() []state.Check {
	a.local.mu.Lock()
	defer a.local.mu.Unlock()
	out := make([]state.Check, 0, len(a.local.checks))
	for _, c := range a.local.checks {
		out = append(out, c.check)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CheckID < out[j].CheckID })
	return out
}

// RegisterCheck implements httpapi.LocalAgent.
func (a *Agent) RegisterCheck(def health.Definition) error {
	if def.ServiceID != "" {
		a.local.mu.Lock()
		_, ok := a.local.services[def.ServiceID]
		a.local.mu.Unlock()
		if !ok {
			return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: fmt.Sprintf("ServiceID %q does not exist", def.ServiceID)}
		}
	}
	if err := def.Validate(a.cfg.EnableScriptChecks); err != nil {
		return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Invalid check: " + err.Error()}
	}
	if err := a.addCheck(def); err != nil {
		return err
	}
	a.local.trigger()
	return nil
}

// DeregisterCheck implements httpapi.LocalAgent.
func (a *Agent) DeregisterCheck(id string) error {
	a.local.mu.Lock()
	_, ok := a.local.checks[id]
	a.local.mu.Unlock()
	if !ok {
		return &httpapi.StatusError{Code: http.StatusNotFound, Reason: fmt.Sprintf("Unknown check ID %q", id)}
	}
	a.removeCheck(id)
	a.local.trigger()
	return nil
}

// UpdateTTL implements httpapi.LocalAgent (pass/warn/fail/update of a TTL check).
func (a *Agent) UpdateTTL(id, status, output string) error {
	if err := a.checks.UpdateTTL(id, status, output); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, health.ErrUnknownCheck) {
			code = http.StatusNotFound
		}
		return &httpapi.StatusError{Code: code, Reason: err.Error()}
	}
	return nil
}

// SetMaintenance implements httpapi.LocalAgent: a critical maintenance check on the
// node (serviceID "") or on one service takes it out of healthy lookups.
func (a *Agent) SetMaintenance(serviceID string, enable bool, reason string) error {
	id, name, notes := nodeMaintenanceID, "Node Maintenance Mode", reason
	if serviceID != "" {
		a.local.mu.Lock()
		_, ok := a.local.services[serviceID]
		a.local.mu.Unlock()
		if !ok {
			return &httpapi.StatusError{Code: http.StatusNotFound, Reason: fmt.Sprintf("Unknown service ID %q", serviceID)}
		}
		id, name = serviceMaintenance+serviceID, "Service Maintenance Mode"
		if notes == "" {
			notes = defaultSMaintReason
		}
	} else if notes == "" {
		notes = defaultMaintReason
	}
	a.local.mu.Lock()
	if enable {
		a.local.checks[id] = &localCheck{check: state.Check{CheckID: id, Name: name, Notes: notes,
			Status: state.HealthCritical, ServiceID: serviceID, Type: "maintenance"}}
	} else {
		delete(a.local.checks, id)
	}
	a.local.mu.Unlock()
	a.local.trigger()
	return nil
}

func (a *Agent) addCheck(def health.Definition) error {
	id := def.CheckID()
	status := def.Status
	if status == "" {
		status = state.HealthCritical
	}
	c := &localCheck{def: def, check: state.Check{CheckID: id, Name: def.Name, Notes: def.Notes, Status: status,
		ServiceID: def.ServiceID, Type: def.Type()}}
	if def.Interval > 0 {
		c.check.Interval = def.Interval.String()
	}
	if def.Timeout > 0 {
		c.check.Timeout = def.Timeout.String()
	}
	a.local.mu.Lock()
	a.local.checks[id] = c
	a.local.mu.Unlock()
	if err := a.checks.Add(def); err != nil {
		a.local.mu.Lock()
		delete(a.local.checks, id)
		a.local.mu.Unlock()
		return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: err.Error()}
	}
	return nil
}

func (a *Agent) removeCheck(id string) {
	a.local.mu.Lock()
	delete(a.local.checks, id)
	a.local.mu.Unlock()
	a.checks.Remove(id)
}

// checkChanged receives the check runners' results.
func (a *Agent) checkChanged(u health.Update) {
	a.local.mu.Lock()
	c, ok := a.local.checks[u.CheckID]
	if ok && (c.check.Status != u.Status || c.check.Output != u.Output) {
		c.check.Status, c.check.Output, c.synced = u.Status, u.Output, false
	}
	a.local.mu.Unlock()
	if ok {
		a.local.trigger()
	}
}

// deregisterCritical removes a service whose check stayed critical for longer than its
// DeregisterCriticalServiceAfter.
func (a *Agent) deregisterCritical(d health.Deregistration) {
	a.logger.Warn("deregistering a service that stayed critical", "service", d.ServiceID, "check", d.CheckID)
	if err := a.DeregisterService(d.ServiceID); err != nil {
		a.logger.Warn("deregistering a critical service failed", "service", d.ServiceID, "err", err)
	}
}

// antiEntropy keeps the catalog in step with the local services and checks: at once on
// a change, and in full every SyncInterval (with jitter, so a fleet's syncs spread out).
func (a *Agent) antiEntropy() {
	defer a.wg.Done()
	full := time.NewTimer(a.cfg.SyncInterval)
	defer full.Stop()
	for {
		select {
		case <-a.stopCh:
			return
		case <-a.local.syncNow:
			a.syncChanges(false)
		case <-full.C:
			a.syncChanges(true)
			full.Reset(a.cfg.SyncInterval + time.Duration(rand.Int64N(int64(a.cfg.SyncInterval/4)+1)))
		}
	}
}

// syncChanges registers the local services with their checks in the catalog and
// removes catalog services of this node that are no longer registered here.
func (a *Agent) syncChanges(full bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a.local.mu.Lock()
	type unit struct {
		svc    *state.Service
		checks []state.Check
	}
	units := map[string]*unit{"": {}}
	for id, s := range a.local.services {
		cp := *s
		units[id] = &unit{svc: &cp}
	}
	dirty := map[string]bool{}
	for _, c := range a.local.checks {
		u := units[c.check.ServiceID]
		if u == nil {
			continue
		}
		u.checks = append(u.checks, c.check)
		if !c.synced {
			dirty[c.check.ServiceID] = true
		}
	}
	a.local.mu.Unlock()

	// What the catalog has for this node decides what is missing, changed or extra.
	_, _, catalogSvcs, _ := a.catalogView(ctx)
	for id, u := range units {
		if u.svc == nil && len(u.checks) == 0 {
			continue
		}
		if !full && !dirty[id] && (u.svc == nil || catalogSvcs[id]) {
			continue
		}
		req := map[string]any{"Node": a.cfg.NodeName, "ID": a.nodeID, "Address": a.advertiseIP(), "SkipNodeUpdate": true}
		if u.svc != nil {
			s := u.svc
			req["Service"] = map[string]any{"ID": s.ID, "Service": s.Service, "Tags": s.Tags, "Address": s.Address,
				"TaggedAddresses": s.TaggedAddresses, "Meta": s.Meta, "Port": s.Port,
				"Weights":           map[string]int{"Passing": s.Weights.Passing, "Warning": s.Weights.Warning},
				"EnableTagOverride": s.EnableTagOverride, "Kind": s.Kind}
		}
		var checks []map[string]any
		for _, c := range u.checks {
			checks = append(checks, map[string]any{"CheckID": c.CheckID, "Name": c.Name, "Notes": c.Notes,
				"Status": c.Status, "Output": c.Output, "ServiceID": c.ServiceID, "Type": c.Type,
				"Definition": map[string]string{"Interval": c.Interval, "Timeout": c.Timeout}})
		}
		req["Checks"] = checks
		if err := a.internalRequest(ctx, http.MethodPut, "/v1/catalog/register", req); err != nil {
			a.logger.Debug("anti-entropy: register failed; retrying in a second", "service", id, "err", err)
			// No leader yet, or it changed: try again soon rather than at the next
			// full sync.
			time.AfterFunc(time.Second, a.local.trigger)
			continue
		}
		a.local.mu.Lock()
		for _, c := range u.checks {
			if lc := a.local.checks[c.CheckID]; lc != nil && lc.check.Status == c.Status && lc.check.Output == c.Output {
				lc.synced = true
			}
		}
		a.local.mu.Unlock()
	}
	for id := range catalogSvcs {
		if _, ok := units[id]; !ok {
			a.internalRequest(ctx, http.MethodPut, "/v1/catalog/deregister", map[string]string{"Node": a.cfg.NodeName, "ServiceID": id})
		}
	}
	// Checks removed here (a deregistered check, maintenance turned off) leave the
	// catalog too; registrations only add and update. serfHealth is the leader's.
	var catalogChecks []struct{ CheckID string }
	if err := a.internalGet(ctx, "/v1/health/node/"+url.PathEscape(a.cfg.NodeName)+"?stale", &catalogChecks); err == nil {
		a.local.mu.Lock()
		var extra []string
		for _, c := range catalogChecks {
			if _, ok := a.local.checks[c.CheckID]; !ok && c.CheckID != state.SerfCheckID {
				extra = append(extra, c.CheckID)
			}
		}
		a.local.mu.Unlock()
		for _, id := range extra {
			a.internalRequest(ctx, http.MethodPut, "/v1/catalog/deregister", map[string]string{"Node": a.cfg.NodeName, "CheckID": id})
		}
	}
}

// catalogView reads this node's services from the catalog (through the API, so a
// client agent asks a server).
func (a *Agent) catalogView(ctx context.Context) (bool, uint64, map[string]bool, error) {
	var out struct {
		Services map[string]json.RawMessage
	}
	rec := &memResponse{header: http.Header{}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/catalog/node/"+a.cfg.NodeName+"?stale", http.NoBody)
	a.http.Handler().ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != http.StatusOK {
		return false, 0, nil, fmt.Errorf("read catalog node: %d %s", rec.code, rec.body.String())
	}
	ids := map[string]bool{}
	if err := json.Unmarshal(rec.body.Bytes(), &out); err == nil {
		for id := range out.Services {
			ids[id] = true
		}
	}
	return true, 0, ids, nil
}

// internalRequest sends a request through this agent's own API (so it is forwarded to
// the leader like any other) and reports a non-2xx answer as an error.
func (a *Agent) internalRequest(ctx context.Context, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(b))
	rec := &memResponse{header: http.Header{}}
	a.http.Handler().ServeHTTP(rec, req)
	if rec.code != 0 && rec.code/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, rec.code, strings.TrimSpace(rec.body.String()))
	}
	return nil
}

// memResponse is an http.ResponseWriter that keeps the answer in memory.
type memResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (m *memResponse) Header() http.Header { return m.header }
func (m *memResponse) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
}
func (m *memResponse) Write(b []byte) (int, error) {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	return m.body.Write(b)
}

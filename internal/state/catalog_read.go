package state

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// ServiceInstance is a service instance with its node and health checks (node checks
// first, then the service's): one entry of /v1/health/service.
type ServiceInstance struct {
	Node    *Node
	Service *Service
	Checks  []*Check
}

// AggregatedStatus is the instance's health as Consul aggregates it: maintenance >
// critical > warning > passing.
func (si *ServiceInstance) AggregatedStatus() string {
	status := HealthPassing
	for _, c := range si.Checks {
		switch {
		case strings.HasPrefix(c.CheckID, "_node_maintenance") || strings.HasPrefix(c.CheckID, "_service_maintenance:"):
			return "maintenance"
		case c.Status == HealthCritical:
			status = HealthCritical
		case c.Status == HealthWarning && status == HealthPassing:
			status = HealthWarning
		}
	}
	return status
}

// watchIndexRow adds the watch of one row of the index table (a table or a service)
// and returns its value, at least 1.
func watchIndexRow(tx *memdb.Txn, ws *WatchSet, name string) uint64 {
	ch, raw, err := tx.FirstWatch(tableIndex, "id", name)
	if err == nil {
		ws.Add(ch)
	}
	if raw == nil {
		return 1
	}
	return max(raw.(*indexEntry).Value, 1)
}

// Nodes lists every catalog node by name.
func (s *Store) Nodes(ws *WatchSet) (uint64, []*Node, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, tableNodes)
	it, err := tx.Get(tableNodes, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("state: list nodes: %w", err)
	}
	var out []*Node
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Node))
	}
	return idx, out, nil
}

// GetNode returns one node, nil when unknown.
func (s *Store) GetNode(ws *WatchSet, name string) (uint64, *Node, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, tableNodes)
	raw, err := tx.First(tableNodes, "id", name)
	if err != nil || raw == nil {
		return idx, nil, err
	}
	return idx, raw.(*Node), nil
}

// Services returns every service name with the union of its instances' tags.
func (s *Store) Services(ws *WatchSet) (uint64, map[string][]string, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, tableServices)
	it, err := tx.Get(tableServices, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("state: list services: %w", err)
	}
	out := map[string][]string{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		svc := raw.(*Service)
		tags := out[svc.Service]
		for _, t := range svc.Tags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		if tags == nil {
			tags = []string{}
		}
		out[svc.Service] = tags
	}
	return idx, out, nil
}

// NodeServices returns a node and its services (nil node when unknown).
func (s *Store) NodeServices(ws *WatchSet, node string) (uint64, *Node, []*Service, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := max(watchIndexRow(tx, ws, tableNodes), watchIndexRow(tx, ws, tableServices))
	raw, err := tx.First(tableNodes, "id", node)
	if err != nil || raw == nil {
		return idx, nil, nil, err
	}
	it, err := tx.Get(tableServices, "node", node)
	if err != nil {
		return 0, nil, nil, err
	}
	var out []*Service
	for r := it.Next(); r != nil; r = it.Next() {
		out = append(out, r.(*Service))
	}
	return idx, raw.(*Node), out, nil
}

// ServiceInstances returns the instances of a service, each with its node and checks;
// the index is that service's own, so blocking on one service wakes only for it.
// With tags, only instances carrying every tag are returned (case-insensitive).
func (s *Store) ServiceInstances(ws *WatchSet, service string, tags []string) (uint64, []ServiceInstance, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, serviceIndexName(service))
	it, err := tx.Get(tableServices, "service", service)
	if err != nil {
		return 0, nil, fmt.Errorf("state: instances of %q: %w", service, err)
	}
	var out []ServiceInstance
	nodes := map[string]*Node{}
	nodeChecks := map[string][]*Check{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		svc := raw.(*Service)
		if !hasTags(svc.Tags, tags) {
			continue
		}
		n, ok := nodes[svc.Node]
		if !ok {
			r, err := tx.First(tableNodes, "id", svc.Node)
			if err != nil {
				return 0, nil, err
			}
			if r != nil {
				n = r.(*Node)
			}
			nodes[svc.Node] = n
			all, err := checksBy(tx, "node", svc.Node)
			if err != nil {
				return 0, nil, err
			}
			var cs []*Check
			for _, c := range all {
				if c.ServiceID == "" {
					cs = append(cs, c)
				}
			}
			nodeChecks[svc.Node] = cs
		}
		if n == nil {
			continue
		}
		checks := slices.Clone(nodeChecks[svc.Node])
		sc, err := checksBy(tx, "node_service", svc.Node, svc.ID)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, ServiceInstance{Node: n, Service: svc, Checks: append(checks, sc...)})
	}
	return idx, out, nil
}

func hasTags(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if strings.EqualFold(h, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func checksBy(tx *memdb.Txn, index string, args ...any) ([]*Check, error) {
	it, err := tx.Get(tableChecks, index, args...)
	if err != nil {
		return nil, fmt.Errorf("state: checks: %w", err)
	}
	var out []*Check
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Check))
	}
	return out, nil
}

// NodeChecks returns the checks of one node (node and service checks).
func (s *Store) NodeChecks(ws *WatchSet, node string) (uint64, []*Check, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, tableChecks)
	out, err := checksBy(tx, "node", node)
	return idx, out, err
}

// ServiceChecks returns the checks of every instance of a service.
func (s *Store) ServiceChecks(ws *WatchSet, service string) (uint64, []*Check, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, serviceIndexName(service))
	out, err := checksBy(tx, "service", service)
	return idx, out, err
}

// ChecksInState returns the checks in a state ("any" for all).
func (s *Store) ChecksInState(ws *WatchSet, status string) (uint64, []*Check, error) {
	tx := s.readTxn()
	defer tx.Abort()
	idx := watchIndexRow(tx, ws, tableChecks)
	var out []*Check
	var err error
	if status == "any" {
		out, err = checksBy(tx, "id")
	} else {
		out, err = checksBy(tx, "status", status)
	}
	return idx, out, err
}

// ServiceIndex returns the index of one service's health view (at least 1) and
// watches it; cheap, so that callers can reuse a result computed at that index.
func (s *Store) ServiceIndex(ws *WatchSet, service string) uint64 {
	tx := s.readTxn()
	defer tx.Abort()
	return watchIndexRow(tx, ws, serviceIndexName(service))
}

// ChecksIndex returns the checks table's index and watches it.
func (s *Store) ChecksIndex(ws *WatchSet) uint64 {
	tx := s.readTxn()
	defer tx.Abort()
	return watchIndexRow(tx, ws, tableChecks)
}

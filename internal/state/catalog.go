package state

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Health statuses, exactly Consul's strings.
const (
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
)

// SerfCheckID is the node check the leader maintains from gossip membership.
const SerfCheckID = "serfHealth"

// Node is a catalog node.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

// Weights are a service instance's load-balancing weights by health.
type Weights struct {
	Passing int
	Warning int
}

// ServiceAddress is an entry of a service's TaggedAddresses.
type ServiceAddress struct {
	Address string
	Port    int
}

// Service is one service instance registered on a node.
type Service struct {
	Node              string
	ID                string
	Service           string
	Tags              []string
	Address           string
	Port              int
	Meta              map[string]string
	Weights           Weights
	EnableTagOverride bool
	TaggedAddresses   map[string]ServiceAddress
	Kind              string
	CreateIndex       uint64
	ModifyIndex       uint64
}

// Check is a health check of a node (ServiceID empty) or of a service instance.
type Check struct {
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
	Interval    string
	Timeout     string
	CreateIndex uint64
	ModifyIndex uint64
}

func catalogTables() map[string]*memdb.TableSchema {
	lower := func(field string) memdb.Indexer { return &memdb.StringFieldIndex{Field: field, Lowercase: true} }
	nodeAnd := func(field string) memdb.Indexer {
		return &memdb.CompoundIndex{Indexes: []memdb.Indexer{lower("Node"), lower(field)}}
	}
	return map[string]*memdb.TableSchema{
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: lower("Node")},
		}},
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":      {Name: "id", Unique: true, Indexer: nodeAnd("ID")},
			"node":    {Name: "node", Indexer: lower("Node")},
			"service": {Name: "service", Indexer: lower("Service")},
		}},
		tableChecks: {Name: tableChecks, Indexes: map[string]*memdb.IndexSchema{
			"id":      {Name: "id", Unique: true, Indexer: nodeAnd("CheckID")},
			"node":    {Name: "node", Indexer: lower("Node")},
			"service": {Name: "service", AllowMissing: true, Indexer: lower("ServiceName")},
			"status":  {Name: "status", Indexer: lower("Status")},
			"node_service": {Name: "node_service", AllowMissing: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{lower("Node"), lower("ServiceID")}}},
		}},
	}
}

// serviceIndexName is the index table entry that moves whenever anything a health
// query of that service returns changes (its instances, their nodes or checks), so a
// blocking query on one service wakes only for that service.
func serviceIndexName(name string) string { return "service." + strings.ToLower(name) }

// RegisterRequest is Consul's catalog registration: a node, and optionally one service
// and checks on it.
type RegisterRequest struct {
	Node    Node
	Service *Service
	Checks  []Check
	// SkipNodeUpdate leaves an existing node's address and metadata alone.
	SkipNodeUpdate bool
}

// ErrNodeIDConflict means a node name is registered with another node ID.
var ErrNodeIDConflict = fmt.Errorf("node name registered with a different node ID")

// CatalogRegister upserts a node, a service and checks. Unchanged objects keep their
// ModifyIndex, so registering the same thing again (anti-entropy) wakes nobody.
func (t *Txn) CatalogRegister(idx uint64, req *RegisterRequest) error {
	raw, err := t.tx.First(tableNodes, "id", req.Node.Node)
	if err != nil {
		return fmt.Errorf("state: read node: %w", err)
	}
	var existing *Node
	if raw != nil {
		existing = raw.(*Node)
	}
	if existing != nil && existing.ID != "" && req.Node.ID != "" && !strings.EqualFold(existing.ID, req.Node.ID) {
		return fmt.Errorf("%w: %q has ID %s, not %s", ErrNodeIDConflict, req.Node.Node, existing.ID, req.Node.ID)
	}
	if existing == nil || !req.SkipNodeUpdate {
		n := req.Node
		n.TaggedAddresses, n.Meta = maps.Clone(n.TaggedAddresses), maps.Clone(n.Meta)
		if existing != nil && n.ID == "" {
			n.ID = existing.ID
		}
		if existing == nil || !nodeEqual(existing, &n) {
			n.CreateIndex, n.ModifyIndex = idx, idx
			if existing != nil {
				n.CreateIndex = existing.CreateIndex
			}
			if err := t.tx.Insert(tableNodes, &n); err != nil {
				return fmt.Errorf("state: write node: %w", err)
			}
			t.bump(tableNodes, idx)
			if existing != nil {
				// Every service on the node reports the node's address.
				if err := t.bumpServicesOfNode(idx, n.Node); err != nil {
					return err
				}
			}
		}
	}
	if svc := req.Service; svc != nil {
		if err := t.upsertService(idx, req.Node.Node, svc); err != nil {
			return err
		}
	}
	for i := range req.Checks {
		if err := t.upsertCheck(idx, req.Node.Node, &req.Checks[i]); err != nil {
			return err
		}
	}
	return nil
}

func (t *Txn) upsertService(idx uint64, node string, svc *Service) error {
	raw, err := t.tx.First(tableServices, "id", node, svc.ID)
	if err != nil {
		return fmt.Errorf("state: read service: %w", err)
	}
	n := *svc
	n.Node = node
	n.Tags, n.Meta, n.TaggedAddresses = slices.Clone(n.Tags), maps.Clone(n.Meta), maps.Clone(n.TaggedAddresses)
	if raw != nil {
		old := raw.(*Service)
		if serviceEqual(old, &n) {
			return nil
		}
		n.CreateIndex = old.CreateIndex
		if !strings.EqualFold(old.Service, n.Service) {
			t.bump(serviceIndexName(old.Service), idx)
		}
	} else {
		n.CreateIndex = idx
	}
	n.ModifyIndex = idx
	if err := t.tx.Insert(tableServices, &n); err != nil {
		return fmt.Errorf("state: write service: %w", err)
	}
	t.bump(tableServices, idx)
	t.bump(serviceIndexName(n.Service), idx)
	return nil
}

func (t *Txn) upsertCheck(idx uint64, node string, c *Check) error {
	n := *c
	n.Node = node
	n.ServiceTags = slices.Clone(n.ServiceTags)
	if n.Status == "" {
		n.Status = HealthCritical
	}
	if n.ServiceID != "" {
		raw, err := t.tx.First(tableServices, "id", node, n.ServiceID)
		if err != nil {
			return fmt.Errorf("state: read service: %w", err)
		}
		if raw == nil {
			return fmt.Errorf("state: check %q: unknown service %q on node %q", n.CheckID, n.ServiceID, node)
		}
		s := raw.(*Service)
		n.ServiceName, n.ServiceTags = s.Service, slices.Clone(s.Tags)
	} else {
		n.ServiceName, n.ServiceTags = "", nil
	}
	raw, err := t.tx.First(tableChecks, "id", node, n.CheckID)
	if err != nil {
		return fmt.Errorf("state: read check: %w", err)
	}
	if raw != nil {
		old := raw.(*Check)
		if checkEqual(old, &n) {
			return nil
		}
		n.CreateIndex = old.CreateIndex
	} else {
		n.CreateIndex = idx
	}
	n.ModifyIndex = idx
	if err := t.tx.Insert(tableChecks, &n); err != nil {
		return fmt.Errorf("state: write check: %w", err)
	}
	t.bump(tableChecks, idx)
	if n.ServiceName != "" {
		t.bump(serviceIndexName(n.ServiceName), idx)
		return nil
	}
	// A node check affects the health of every service on the node.
	return t.bumpServicesOfNode(idx, node)
}

func (t *Txn) bumpServicesOfNode(idx uint64, node string) error {
	it, err := t.tx.Get(tableServices, "node", node)
	if err != nil {
		return fmt.Errorf("state: services of node: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t.bump(serviceIndexName(raw.(*Service).Service), idx)
	}
	return nil
}

// CatalogDeregister removes a node with everything on it (serviceID and checkID
// empty), one service with its checks, or one check. Removing what is not there is a
// no-op.
func (t *Txn) CatalogDeregister(idx uint64, node, serviceID, checkID string) error {
	switch {
	case checkID != "":
		return t.deleteCheck(idx, node, checkID)
	case serviceID != "":
		return t.deleteService(idx, node, serviceID)
	}
	services, err := t.tx.Get(tableServices, "node", node)
	if err != nil {
		return err
	}
	var ids []string
	for raw := services.Next(); raw != nil; raw = services.Next() {
		ids = append(ids, raw.(*Service).ID)
	}
	for _, id := range ids {
		if err := t.deleteService(idx, node, id); err != nil {
			return err
		}
	}
	checks, err := t.tx.Get(tableChecks, "node", node)
	if err != nil {
		return err
	}
	var cids []string
	for raw := checks.Next(); raw != nil; raw = checks.Next() {
		cids = append(cids, raw.(*Check).CheckID)
	}
	for _, id := range cids {
		if err := t.deleteCheck(idx, node, id); err != nil {
			return err
		}
	}
	raw, err := t.tx.First(tableNodes, "id", node)
	if err != nil || raw == nil {
		return err
	}
	if err := t.tx.Delete(tableNodes, raw); err != nil {
		return fmt.Errorf("state: delete node: %w", err)
	}
	t.bump(tableNodes, idx)
	return nil
}

func (t *Txn) deleteService(idx uint64, node, id string) error {
	raw, err := t.tx.First(tableServices, "id", node, id)
	if err != nil || raw == nil {
		return err
	}
	svc := raw.(*Service)
	checks, err := t.tx.Get(tableChecks, "node_service", node, id)
	if err != nil {
		return err
	}
	var victims []any
	for c := checks.Next(); c != nil; c = checks.Next() {
		victims = append(victims, c)
	}
	for _, c := range victims {
		if err := t.tx.Delete(tableChecks, c); err != nil {
			return fmt.Errorf("state: delete check: %w", err)
		}
	}
	if len(victims) > 0 {
		t.bump(tableChecks, idx)
	}
	if err := t.tx.Delete(tableServices, svc); err != nil {
		return fmt.Errorf("state: delete service: %w", err)
	}
	t.bump(tableServices, idx)
	t.bump(serviceIndexName(svc.Service), idx)
	return nil
}

func (t *Txn) deleteCheck(idx uint64, node, id string) error {
	raw, err := t.tx.First(tableChecks, "id", node, id)
	if err != nil || raw == nil {
		return err
	}
	c := raw.(*Check)
	if err := t.tx.Delete(tableChecks, c); err != nil {
		return fmt.Errorf("state: delete check: %w", err)
	}
	t.bump(tableChecks, idx)
	if c.ServiceName != "" {
		t.bump(serviceIndexName(c.ServiceName), idx)
		return nil
	}
	return t.bumpServicesOfNode(idx, node)
}

func nodeEqual(a, b *Node) bool {
	return a.ID == b.ID && a.Node == b.Node && a.Address == b.Address && a.Datacenter == b.Datacenter &&
		maps.Equal(a.TaggedAddresses, b.TaggedAddresses) && maps.Equal(a.Meta, b.Meta)
}

func serviceEqual(a, b *Service) bool {
	return a.ID == b.ID && a.Service == b.Service && slices.Equal(a.Tags, b.Tags) && a.Address == b.Address &&
		a.Port == b.Port && maps.Equal(a.Meta, b.Meta) && a.Weights == b.Weights &&
		a.EnableTagOverride == b.EnableTagOverride && maps.Equal(a.TaggedAddresses, b.TaggedAddresses) && a.Kind == b.Kind
}

func checkEqual(a, b *Check) bool {
	return a.CheckID == b.CheckID && a.Name == b.Name && a.Status == b.Status && a.Notes == b.Notes &&
		a.Output == b.Output && a.ServiceID == b.ServiceID && a.ServiceName == b.ServiceName &&
		slices.Equal(a.ServiceTags, b.ServiceTags) && a.Type == b.Type && a.Interval == b.Interval && a.Timeout == b.Timeout
}

package state

import (
	"testing"
)

func register(t *testing.T, s *Store, idx uint64, req RegisterRequest) {
	t.Helper()
	apply(t, s, func(tx *Txn) error { return tx.CatalogRegister(idx, &req) })
}

func webOn(node, id, addr string, port int, tags ...string) RegisterRequest {
	return RegisterRequest{
		Node:    Node{ID: node + "-id", Node: node, Address: addr, Datacenter: "dc1"},
		Service: &Service{ID: id, Service: "web", Tags: tags, Port: port},
		Checks: []Check{
			{CheckID: SerfCheckID, Name: "Serf Health Status", Status: HealthPassing},
			{CheckID: "service:" + id, Name: "web check", ServiceID: id, Status: HealthPassing},
		},
	}
}

func TestCatalogRegisterAndServiceIndexes(t *testing.T) {
	s := newTestStore(t)
	register(t, s, 10, webOn("n1", "web1", "10.0.0.1", 80, "v1"))
	register(t, s, 11, webOn("n2", "web2", "10.0.0.2", 80, "v2"))
	register(t, s, 12, RegisterRequest{Node: Node{ID: "n3-id", Node: "n3", Address: "10.0.0.3"},
		Service: &Service{ID: "db", Service: "db", Port: 5432}})

	idx, inst, err := s.ServiceInstances(nil, "web", nil)
	if err != nil || len(inst) != 2 || idx != 11 {
		t.Fatalf("web: %d instances at %d, %v", len(inst), idx, err)
	}
	if len(inst[0].Checks) != 2 || inst[0].Checks[0].CheckID != SerfCheckID || inst[0].Checks[1].ServiceName != "web" {
		t.Fatalf("checks of an instance: %+v", inst[0].Checks)
	}
	if _, tagged, _ := s.ServiceInstances(nil, "web", []string{"V2"}); len(tagged) != 1 || tagged[0].Service.ID != "web2" {
		t.Fatalf("tag filter: %+v", tagged)
	}

	// Re-registering the same thing changes nothing and wakes nobody.
	ws := NewWatchSet()
	s.ServiceInstances(ws, "web", nil)
	register(t, s, 13, webOn("n1", "web1", "10.0.0.1", 80, "v1"))
	if fired(ws) {
		t.Fatal("an identical registration woke a watcher")
	}
	// Another service's change does not wake web's watchers either.
	register(t, s, 14, RegisterRequest{Node: Node{ID: "n3-id", Node: "n3", Address: "10.0.0.3"},
		Service: &Service{ID: "db", Service: "db", Port: 5433}})
	if fired(ws) {
		t.Fatal("a db change woke a web watcher")
	}
	// A node-level check turning critical moves web's index: its instances' health changed.
	register(t, s, 15, RegisterRequest{Node: Node{ID: "n1-id", Node: "n1", Address: "10.0.0.1"},
		Checks: []Check{{CheckID: SerfCheckID, Name: "Serf Health Status", Status: HealthCritical}}})
	if !fired(ws) {
		t.Fatal("a critical node check did not wake web's watchers")
	}
	ws.Release()
	idx, inst, _ = s.ServiceInstances(nil, "web", nil)
	statuses := map[string]string{}
	for _, i := range inst {
		statuses[i.Service.ID] = i.AggregatedStatus()
	}
	if idx != 15 || statuses["web1"] != HealthCritical || statuses["web2"] != HealthPassing {
		t.Fatalf("after node failure: idx %d, %v", idx, statuses)
	}
	_, services, _ := s.Services(nil)
	if len(services) != 2 || len(services["web"]) != 2 {
		t.Fatalf("services %v", services)
	}
}

func TestCatalogDeregister(t *testing.T) {
	s := newTestStore(t)
	register(t, s, 10, webOn("n1", "web1", "10.0.0.1", 80))
	register(t, s, 11, RegisterRequest{Node: Node{ID: "n1-id", Node: "n1", Address: "10.0.0.1"},
		Service: &Service{ID: "api", Service: "api", Port: 90},
		Checks:  []Check{{CheckID: "service:api", ServiceID: "api", Status: HealthWarning}}})
	apply(t, s, func(tx *Txn) error { return tx.CatalogDeregister(12, "n1", "", "service:api") })
	if _, inst, _ := s.ServiceInstances(nil, "api", nil); len(inst) != 1 || len(inst[0].Checks) != 1 {
		t.Fatalf("after check deregistration: %+v", inst)
	}
	apply(t, s, func(tx *Txn) error { return tx.CatalogDeregister(13, "n1", "api", "") })
	if _, inst, _ := s.ServiceInstances(nil, "api", nil); len(inst) != 0 {
		t.Fatalf("after service deregistration: %+v", inst)
	}
	apply(t, s, func(tx *Txn) error { return tx.CatalogDeregister(14, "n1", "", "") })
	_, nodes, _ := s.Nodes(nil)
	_, checks, _ := s.ChecksInState(nil, "any")
	if len(nodes) != 0 || len(checks) != 0 {
		t.Fatalf("after node deregistration: %d nodes, %d checks", len(nodes), len(checks))
	}
}

func TestCatalogRejectsCheckOfUnknownServiceAndNodeIDConflict(t *testing.T) {
	s := newTestStore(t)
	tx := s.WriteTxn()
	err := tx.CatalogRegister(1, &RegisterRequest{Node: Node{Node: "n1"}, Checks: []Check{{CheckID: "c", ServiceID: "ghost"}}})
	tx.Abort()
	if err == nil {
		t.Fatal("a check of an unknown service was accepted")
	}
	register(t, s, 2, RegisterRequest{Node: Node{ID: "a", Node: "n1"}})
	tx = s.WriteTxn()
	err = tx.CatalogRegister(3, &RegisterRequest{Node: Node{ID: "b", Node: "n1"}})
	tx.Abort()
	if err == nil {
		t.Fatal("a node name was taken over by another node ID")
	}
}

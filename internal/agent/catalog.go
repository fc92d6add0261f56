package agent

import (
	"context"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/membership"
	"github.com/wolke-platform/wolke/internal/state"
)

// reconcileCatalog makes the catalog follow gossip, on the leader: every alive or
// failed member is a catalog node with a serfHealth check (passing or critical, so a
// failed node's services drop out of healthy lookups); a member that left, or that
// gossip forgot, is deregistered with everything on it. Only differences are written.
func (a *Agent) reconcileCatalog() {
	members := a.pool.Members()
	seen := map[string]bool{}
	for _, m := range members {
		if m.Datacenter() != a.cfg.Datacenter {
			continue
		}
		seen[m.Name] = true
		switch m.Status {
		case membership.StatusAlive, membership.StatusFailed, membership.StatusLeaving:
			status, output := state.HealthPassing, "Agent alive and reachable"
			if m.Status == membership.StatusFailed {
				status, output = state.HealthCritical, "Agent not live or unreachable"
			}
			if a.catalogNodeCurrent(m, status) {
				continue
			}
			req := &state.RegisterRequest{
				Node: state.Node{ID: m.ID(), Node: m.Name, Address: m.Addr, Datacenter: a.cfg.Datacenter,
					TaggedAddresses: map[string]string{"lan": m.Addr, "lan_ipv4": m.Addr, "wan": m.Addr, "wan_ipv4": m.Addr}},
				Checks: []state.Check{{CheckID: state.SerfCheckID, Name: "Serf Health Status", Status: status,
					Output: output}},
			}
			if err := a.applyCatalog(command.Register, req); err != nil {
				a.logger.Warn("registering a member in the catalog failed", "node", m.Name, "err", err)
			}
		case membership.StatusLeft:
			a.deregisterNode(m.Name)
		}
	}
	_, nodes, err := a.store.Nodes(nil)
	if err != nil {
		return
	}
	for _, n := range nodes {
		if !seen[n.Node] && n.Datacenter == a.cfg.Datacenter && n.ID != "" && a.isGossipNode(n) {
			a.deregisterNode(n.Node)
		}
	}
}

// isGossipNode tells nodes that agents run on (they have a serfHealth check) from
// external nodes registered through the catalog API, which gossip knows nothing about.
func (a *Agent) isGossipNode(n *state.Node) bool {
	_, checks, err := a.store.NodeChecks(nil, n.Node)
	if err != nil {
		return false
	}
	for _, c := range checks {
		if c.CheckID == state.SerfCheckID {
			return true
		}
	}
	return false
}

func (a *Agent) catalogNodeCurrent(m membership.Member, status string) bool {
	_, n, err := a.store.GetNode(nil, m.Name)
	if err != nil || n == nil || n.Address != m.Addr || n.ID != m.ID() {
		return false
	}
	_, checks, err := a.store.NodeChecks(nil, m.Name)
	if err != nil {
		return false
	}
	for _, c := range checks {
		if c.CheckID == state.SerfCheckID {
			return c.Status == status
		}
	}
	return false
}

func (a *Agent) deregisterNode(name string) {
	_, n, err := a.store.GetNode(nil, name)
	if err != nil || n == nil {
		return
	}
	if err := a.applyCatalog(command.Deregister, &command.DeregisterRequest{Node: name}); err != nil {
		a.logger.Warn("deregistering a departed member failed", "node", name, "err", err)
	}
}

func (a *Agent) applyCatalog(t command.Type, req any) error {
	cmd, err := command.Encode(t, req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = a.node.Apply(ctx, cmd)
	return err
}

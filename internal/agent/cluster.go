package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/membership"
)

// Interface guard: the agent serves the membership and operator endpoints.
var _ httpapi.Cluster = (*Agent)(nil)

// Members implements httpapi.Cluster.
func (a *Agent) Members() []membership.Member { return a.pool.Members() }

// Join implements httpapi.Cluster.
func (a *Agent) Join(ctx context.Context, addr string) error {
	if _, err := a.pool.Join(ctx, []string{addr}); err != nil {
		return fmt.Errorf("join %s: %w", addr, err)
	}
	return nil
}

// RequestLeave implements httpapi.Cluster: the process that runs the agent sees
// LeaveRequested close, leaves gracefully and stops.
func (a *Agent) RequestLeave() {
	a.leaveOnce.Do(func() { close(a.leaveCh) })
}

// LeaveRequested closes when a client asked the agent to leave (PUT /v1/agent/leave).
func (a *Agent) LeaveRequested() <-chan struct{} { return a.leaveCh }

// ForceLeave implements httpapi.Cluster. A failed server that is forced out is then
// removed from the Raft configuration by the leader's reconciliation.
func (a *Agent) ForceLeave(node string, prune bool) error {
	if err := a.pool.ForceLeave(node, prune); err != nil {
		if errors.Is(err, membership.ErrUnknownMember) {
			return &httpapi.StatusError{Code: 404, Reason: "Unknown node " + node}
		}
		return err
	}
	select {
	case a.memberChanged <- struct{}{}:
	default:
	}
	return nil
}

// RaftConfiguration implements httpapi.Cluster.
func (a *Agent) RaftConfiguration() (httpapi.RaftConfiguration, error) {
	if a.node == nil {
		return httpapi.RaftConfiguration{}, consensus.ErrNoLeader
	}
	servers, index, err := a.node.Configuration()
	if err != nil {
		return httpapi.RaftConfiguration{}, err
	}
	names := map[string]string{}
	for _, m := range a.pool.Members() {
		names[m.ID()] = m.Name
	}
	_, leaderID := a.node.Leader()
	out := httpapi.RaftConfiguration{Index: index, Servers: []httpapi.RaftServer{}}
	for _, s := range servers {
		out.Servers = append(out.Servers, httpapi.RaftServer{
			ID: s.ID, Node: names[s.ID], Address: s.Address, Leader: s.ID == leaderID,
			ProtocolVersion: "3", Voter: s.Voter,
		})
	}
	return out, nil
}

// RemovePeer implements httpapi.Cluster (the API forwards it to the leader).
func (a *Agent) RemovePeer(id, address string) error {
	if a.node == nil {
		return consensus.ErrNoLeader
	}
	servers, _, err := a.node.Configuration()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if (id != "" && s.ID == id) || (address != "" && s.Address == address) {
			return a.node.RemoveServer(s.ID)
		}
	}
	return &httpapi.StatusError{Code: 404, Reason: fmt.Sprintf("No Raft peer with id %q or address %q", id, address)}
}

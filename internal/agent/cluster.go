package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

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
	var target membership.Member
	for _, m := range a.pool.Members() {
		if m.Name == node {
			target = m
		}
	}
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
	// Gossip may drop a force-leave that reaches a member before news it depends on
	// (serf orders them by Lamport time), so a failed server is also removed from Raft
	// directly, through the leader, rather than by waiting for its reconciliation.
	if target.IsServer() && target.Datacenter() == a.cfg.Datacenter && target.ID() != "" && target.ID() != a.nodeID {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.LeaderWait)
		defer cancel()
		if err := a.removeServerViaLeader(ctx, target.ID()); err != nil {
			return fmt.Errorf("force-leave %s: remove from Raft: %w", node, err)
		}
	}
	return nil
}

// removeServerViaLeader removes a Raft server, on this node if it leads, else by asking
// the leader (or, from a client agent, a server) over the server port.
func (a *Agent) removeServerViaLeader(ctx context.Context, id string) error {
	for {
		if a.node != nil && a.node.IsLeader() {
			err := a.node.RemoveServer(id)
			if err == nil || !errors.Is(err, consensus.ErrNotLeader) {
				return err
			}
		} else if target := a.forwardTarget(); target != "" {
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete,
				"http://"+target+"/v1/operator/raft/peer?id="+url.QueryEscape(id), nil)
			if err != nil {
				return err
			}
			resp, err := a.forwarder.Do(ctx, target, req, nil)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK, http.StatusNotFound: // removed, or no longer a peer
					return nil
				}
				a.logger.Debug("remove peer via leader", "status", resp.StatusCode, "body", string(body))
			}
		}
		select {
		case <-ctx.Done():
			return consensus.ErrNoLeader
		case <-time.After(50 * time.Millisecond):
		}
	}
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

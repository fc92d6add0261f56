package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// HasState reports whether this node has Raft state (it was bootstrapped or joined).
func (n *Node) HasState() bool {
	if idx := n.raft.LastIndex(); idx > 0 {
		return true
	}
	servers, err := n.Servers()
	return err == nil && len(servers) > 0
}

// BootstrapWith forms a new cluster from servers, once. Every server that sees the
// same expected set calls it with the same list, which Raft accepts as one bootstrap.
func (n *Node) BootstrapWith(servers []Server) error {
	conf := raft.Configuration{}
	for _, s := range servers {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address),
		})
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	return nil
}

// Configuration returns the Raft configuration and the log index it was written at.
func (n *Node) Configuration() ([]Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, n.translate(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, f.Index(), nil
}

// AddVoter adds (or re-addresses) a voting server; only the leader can.
func (n *Node) AddVoter(id, addr string) error {
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("consensus: add voter %s: %w", id, n.translate(err))
	}
	return nil
}

// RemoveServer removes a server from the configuration; only the leader can.
func (n *Node) RemoveServer(id string) error {
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("consensus: remove server %s: %w", id, n.translate(err))
	}
	return nil
}

// TransferLeadership hands leadership to another voter before this one leaves.
func (n *Node) TransferLeadership() error {
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("consensus: transfer leadership: %w", n.translate(err))
	}
	return nil
}

// LocalID is this node's Raft server ID.
func (n *Node) LocalID() string { return n.cfg.NodeID }

// LeaderCh-style observation: LeaderChanges returns a channel that receives true when
// this node becomes a leader that may serve reads, and false when it stops leading.
// It is buffered and lossy: readers should look at ReadReady for the current state.
func (n *Node) LeaderChanges() <-chan bool { return n.leaderChanges }

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/membership"
)

// serverDuties runs on every server: it bootstraps the cluster once -bootstrap-expect
// servers have found each other, and while this server leads, it reconciles gossip
// membership into the Raft configuration. It reacts to membership events and, as a
// safety net against lost events, rescans every ReconcileInterval.
func (a *Agent) serverDuties() {
	defer a.wg.Done()
	tick := time.NewTicker(a.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		if !a.node.HasState() && a.cfg.BootstrapExpect > 0 {
			a.maybeBootstrap()
		}
		if a.node.ReadReady() {
			a.reconcile()
			a.reconcileCatalog()
			a.invalidateSessions()
		}
		select {
		case <-a.stopCh:
			return
		case leader := <-a.node.LeaderChanges():
			if leader {
				a.armAllSessions()
			} else {
				a.sessionTTL.stopAll()
			}
		case <-a.memberChanged:
		case <-tick.C:
		}
	}
}

// peerServers are the alive servers of this datacenter in gossip, this one included.
func (a *Agent) peerServers() []membership.Member {
	var out []membership.Member
	for _, m := range a.pool.Members() {
		if m.IsServer() && m.Status == membership.StatusAlive && m.Datacenter() == a.cfg.Datacenter {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(x, y membership.Member) int {
		if x.Name < y.Name {
			return -1
		}
		if x.Name > y.Name {
			return 1
		}
		return 0
	})
	return out
}

// maybeBootstrap forms the cluster when BootstrapExpect servers with the same
// expectation are alive and none of them already has a Raft configuration. Every one of
// them computes the same server list, so they all bootstrap identically (Raft treats
// that as one bootstrap). A server that finds peers with state joins them instead: the
// leader adds it.
func (a *Agent) maybeBootstrap() {
	servers := a.peerServers()
	for _, m := range servers {
		if e := m.Expect(); e != 0 && e != a.cfg.BootstrapExpect {
			a.logger.Error("servers disagree on -bootstrap-expect; not bootstrapping",
				"server", m.Name, "expect", e, "mine", a.cfg.BootstrapExpect)
			return
		}
	}
	if len(servers) < a.cfg.BootstrapExpect {
		return
	}
	servers = servers[:a.cfg.BootstrapExpect]
	var list []consensus.Server
	self := false
	for _, m := range servers {
		if m.ID() == a.nodeID {
			self = true
		}
		list = append(list, consensus.Server{ID: m.ID(), Address: m.RPCAddr(), Voter: true})
	}
	if !self {
		return // the leader of those servers will add this one
	}
	for _, m := range servers {
		if m.ID() == a.nodeID {
			continue
		}
		peers, err := a.remotePeers(m.RPCAddr())
		if err != nil {
			a.logger.Info("cannot ask a server for its Raft peers yet; bootstrap deferred", "server", m.Name, "err", err)
			return
		}
		if len(peers) > 0 {
			a.logger.Info("a server already has Raft peers; waiting to be added instead of bootstrapping", "server", m.Name)
			return
		}
	}
	a.logger.Info("bootstrapping the cluster", "servers", len(list))
	if err := a.node.BootstrapWith(list); err != nil {
		a.logger.Error("bootstrap failed", "err", err)
	}
}

// remotePeers asks another server, over the server port, for its Raft peers.
func (a *Agent) remotePeers(rpcAddr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rpcAddr+"/v1/status/peers", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.forwarder.Do(ctx, rpcAddr, req, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusInternalServerError {
		return nil, nil // no Raft state: "No cluster leader"
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status/peers: %s", resp.Status)
	}
	var peers []string
	if err := json.Unmarshal(body, &peers); err != nil {
		return nil, fmt.Errorf("status/peers: %w", err)
	}
	return peers, nil
}

// reconcile makes the Raft configuration follow gossip: alive servers of this
// datacenter become voters (or get their new address), servers that left are removed.
// Failed servers stay: they may come back, and removing them would shrink the quorum
// only until they do.
func (a *Agent) reconcile() {
	current, err := a.node.Servers()
	if err != nil {
		return
	}
	byID := map[string]consensus.Server{}
	for _, s := range current {
		byID[s.ID] = s
	}
	for _, m := range a.pool.Members() {
		if !m.IsServer() || m.Datacenter() != a.cfg.Datacenter || m.ID() == "" {
			continue
		}
		have, inRaft := byID[m.ID()]
		switch m.Status {
		case membership.StatusAlive:
			if !inRaft || have.Address != m.RPCAddr() || !have.Voter {
				a.logger.Info("adding server to Raft", "server", m.Name, "addr", m.RPCAddr())
				if err := a.node.AddVoter(m.ID(), m.RPCAddr()); err != nil {
					a.logger.Warn("add server failed", "server", m.Name, "err", err)
				}
			}
		case membership.StatusLeft:
			if inRaft && m.ID() != a.nodeID {
				a.logger.Info("removing departed server from Raft", "server", m.Name)
				if err := a.node.RemoveServer(m.ID()); err != nil {
					a.logger.Warn("remove server failed", "server", m.Name, "err", err)
				}
			}
		}
	}
}

// randomServer picks an alive server of this datacenter for a client agent to
// forward to.
func (a *Agent) randomServer() string {
	if a.pool == nil {
		return ""
	}
	servers := a.peerServers()
	if len(servers) == 0 {
		return ""
	}
	return servers[rand.IntN(len(servers))].RPCAddr()
}

package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startClusterAgent starts a server (expect > 0) or client (expect 0) agent on free
// loopback ports, joining join when given.
func startClusterAgent(t testing.TB, name string, expect int, join string) *Agent {
	t.Helper()
	return startClusterAgentWith(t, name, expect, join, nil)
}

// startClusterAgentWith is startClusterAgent with a last word on the config.
func startClusterAgentWith(t testing.TB, name string, expect int, join string, mutate func(*Config)) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.Server = expect > 0
	cfg.BootstrapExpect = expect
	if cfg.Server {
		cfg.DataDir = t.TempDir()
	}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.ServerPort, cfg.SerfPort = 0, 0
	cfg.DNS.Addr = "127.0.0.1:0"
	cfg.Gossip = fastGossip
	cfg.ReconcileInterval = 200 * time.Millisecond
	cfg.Logger = testLogger().With("node", name)
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	if join != "" {
		cfg.Join = []string{join}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	return a
}

// startThreeServers starts servers PREFIX1..3 and waits for a leader with 3 voters.
func startThreeServers(t *testing.T, prefix string) []*Agent {
	t.Helper()
	return startThreeServersWith(t, prefix, nil)
}

// startThreeServersWith is startThreeServers with a last word on each server's config.
func startThreeServersWith(t *testing.T, prefix string, mutate func(*Config)) []*Agent {
	t.Helper()
	s1 := startClusterAgentWith(t, prefix+"1", 3, "", mutate)
	s2 := startClusterAgentWith(t, prefix+"2", 3, s1.SerfAddr(), mutate)
	s3 := startClusterAgentWith(t, prefix+"3", 3, s1.SerfAddr(), mutate)
	servers := []*Agent{s1, s2, s3}
	waitFor(t, 15*time.Second, prefix+": a leader with 3 voters", func() bool {
		l := leaderOf(servers)
		if l == nil {
			return false
		}
		peers, err := l.node.Servers()
		return err == nil && len(peers) == 3
	})
	return servers
}

func leaderOf(agents []*Agent) *Agent {
	for _, a := range agents {
		if a.node != nil && a.node.ReadReady() {
			return a
		}
	}
	return nil
}

func TestThreeServersBootstrapAndReplicate(t *testing.T) {
	s1 := startClusterAgent(t, "s1", 3, "")
	s2 := startClusterAgent(t, "s2", 3, s1.SerfAddr())
	s3 := startClusterAgent(t, "s3", 3, s1.SerfAddr())
	servers := []*Agent{s1, s2, s3}
	waitFor(t, 15*time.Second, "a leader with 3 voters", func() bool {
		l := leaderOf(servers)
		if l == nil {
			return false
		}
		peers, err := l.node.Servers()
		return err == nil && len(peers) == 3
	})

	// A write through every server (followers forward) is visible on all of them.
	for i, s := range servers {
		kv := clientFor(t, s).KV()
		if _, err := kv.Put(&api.KVPair{Key: fmt.Sprintf("from/%d", i), Value: []byte(s.cfg.NodeName)}, nil); err != nil {
			t.Fatalf("write via %s: %v", s.cfg.NodeName, err)
		}
	}
	for _, s := range servers {
		kv := clientFor(t, s).KV()
		// Default and consistent reads are answered by the leader: always complete.
		for _, q := range []*api.QueryOptions{nil, {RequireConsistent: true}} {
			list, _, err := kv.List("from/", q)
			if err != nil || len(list) != 3 {
				t.Fatalf("read via %s (%+v): %d keys, %v", s.cfg.NodeName, q, len(list), err)
			}
		}
		// A stale read is local; it converges.
		waitFor(t, 5*time.Second, "stale read on "+s.cfg.NodeName, func() bool {
			list, meta, err := kv.List("from/", &api.QueryOptions{AllowStale: true})
			return err == nil && len(list) == 3 && meta.KnownLeader
		})
	}
	// Status endpoints agree on the leader and peers.
	leader, _ := clientFor(t, s2).Status().Leader()
	peers, _ := clientFor(t, s3).Status().Peers()
	if leader == "" || len(peers) != 3 {
		t.Fatalf("leader %q peers %v", leader, peers)
	}
}

func TestClientAgentForwardsAndLeaderFailover(t *testing.T) {
	s1 := startClusterAgent(t, "s1", 3, "")
	s2 := startClusterAgent(t, "s2", 3, s1.SerfAddr())
	s3 := startClusterAgent(t, "s3", 3, s1.SerfAddr())
	c1 := startClusterAgent(t, "c1", 0, s1.SerfAddr())
	servers := []*Agent{s1, s2, s3}
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf(servers) != nil })
	kv := clientFor(t, c1).KV()
	waitFor(t, 10*time.Second, "the client agent's first forwarded write", func() bool {
		_, err := kv.Put(&api.KVPair{Key: "via-client", Value: []byte("1")}, nil)
		return err == nil
	})
	// A stale read goes to any server and may lag; it converges.
	waitFor(t, 5*time.Second, "a stale read through the client", func() bool {
		p, _, err := kv.Get("via-client", &api.QueryOptions{AllowStale: true})
		return err == nil && p != nil && string(p.Value) == "1"
	})
	// A default read goes to the leader and sees the write at once.
	if p, _, err := kv.Get("via-client", nil); err != nil || p == nil || string(p.Value) != "1" {
		t.Fatalf("default read through the client: %+v %v", p, err)
	}

	// Stop the leader: a new one takes over and writes through the client resume.
	old := leaderOf(servers)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	old.Shutdown(ctx)
	cancel()
	var rest []*Agent
	for _, s := range servers {
		if s != old {
			rest = append(rest, s)
		}
	}
	waitFor(t, 15*time.Second, "a new leader", func() bool { return leaderOf(rest) != nil })
	waitFor(t, 15*time.Second, "a write after failover", func() bool {
		_, err := kv.Put(&api.KVPair{Key: "after-failover", Value: []byte("2")}, nil)
		return err == nil
	})
	for _, s := range rest {
		p, _, err := clientFor(t, s).KV().Get("via-client", nil)
		if err != nil || p == nil {
			t.Fatalf("acknowledged write missing on %s after failover: %v", s.cfg.NodeName, err)
		}
	}
}

func memberStatusOf(c *api.Client, name string) int {
	members, err := c.Agent().Members(false)
	if err != nil {
		return -1
	}
	for _, m := range members {
		if m.Name == name {
			return m.Status
		}
	}
	return -1
}

func TestMembersFailureForceLeaveAndOperator(t *testing.T) {
	servers := startThreeServers(t, "s")
	c1 := startClusterAgent(t, "c1", 0, servers[0].SerfAddr())
	api1 := clientFor(t, c1)
	waitFor(t, 5*time.Second, "4 alive members with roles", func() bool {
		members, err := api1.Agent().Members(false)
		if err != nil || len(members) != 4 {
			return false
		}
		for _, m := range members {
			wantRole := "consul"
			if m.Name == "c1" {
				wantRole = "node"
			}
			if m.Status != 1 || m.Tags["role"] != wantRole || m.Tags["dc"] != "dc1" {
				return false
			}
		}
		return true
	})
	conf, err := api1.Operator().RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 3 {
		t.Fatalf("raft configuration via the client agent: %+v %v", conf, err)
	}
	leaders := 0
	for _, s := range conf.Servers {
		if s.Leader {
			leaders++
		}
		if s.Node == "" || !s.Voter {
			t.Fatalf("server entry %+v", s)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in %+v", leaders, conf.Servers)
	}

	// Crash a follower (no leave): gossip marks it failed, Raft keeps it.
	var victim *Agent
	for _, s := range servers {
		if !s.node.IsLeader() {
			victim = s
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	victim.Shutdown(ctx)
	cancel()
	waitFor(t, 15*time.Second, victim.cfg.NodeName+" failed", func() bool { return memberStatusOf(api1, victim.cfg.NodeName) == 4 })
	if conf, _ := api1.Operator().RaftGetConfiguration(nil); len(conf.Servers) != 3 {
		t.Fatalf("a failed server left Raft without force-leave: %+v", conf.Servers)
	}
	// Force-leave: left in gossip, and the leader removes it from Raft.
	if err := api1.Agent().ForceLeave(victim.cfg.NodeName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "force-left server out of Raft", func() bool {
		conf, err := api1.Operator().RaftGetConfiguration(nil)
		return err == nil && len(conf.Servers) == 2 && memberStatusOf(api1, victim.cfg.NodeName) == 3
	})
	if _, err := api1.KV().Put(&api.KVPair{Key: "still", Value: []byte("writable")}, nil); err != nil {
		t.Fatalf("write after force-leave: %v", err)
	}
	if err := api1.Agent().ForceLeave("no-such-node"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("force-leave of an unknown node: %v", err)
	}
}

func TestGracefulLeaveRemovesServer(t *testing.T) {
	servers := startThreeServers(t, "s")
	// The leader itself leaves: it hands leadership on first.
	l := leaderOf(servers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	l.Shutdown(ctx)
	var rest []*Agent
	for _, s := range servers {
		if s != l {
			rest = append(rest, s)
		}
	}
	waitFor(t, 10*time.Second, "2 voters and a leader", func() bool {
		nl := leaderOf(rest)
		if nl == nil {
			return false
		}
		peers, err := nl.Servers()
		return err == nil && len(peers) == 2
	})
	c := clientFor(t, rest[0])
	if st := memberStatusOf(c, l.cfg.NodeName); st != 3 {
		t.Fatalf("left server has status %d, want 3 (left)", st)
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatalf("write after a graceful leave: %v", err)
	}
}

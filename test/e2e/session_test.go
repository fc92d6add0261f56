package e2e

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestEphemeralKeyOfKilledAgentVanishes: a session created through a client agent
// belongs to that agent's node; SIGKILL the agent, gossip (LAN timing) marks it
// failed, the leader invalidates the session and its ephemeral key disappears. The
// time it takes is logged: it is the failure-detection time plus one reconciliation.
func TestEphemeralKeyOfKilledAgentVanishes(t *testing.T) {
	c := startCluster(t, clusterOpts{clients: 1})
	client := c.clients[0]
	cl := c.api(client)
	id, _, err := cl.Session().Create(&api.SessionEntry{Name: "worker", Behavior: "delete"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, _, err := cl.Session().Info(id, nil); err != nil || info == nil || info.Node != client.name {
		t.Fatalf("session %+v (%v): want it on node %s", info, err, client.name)
	}
	if ok, _, err := cl.KV().Acquire(&api.KVPair{Key: "workers/" + client.name, Value: []byte("alive"), Session: id}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	client.kill()
	killed := time.Now()
	kv := c.api(c.servers[0]).KV()
	deadline := killed.Add(40 * time.Second)
	for {
		p, _, err := kv.Get("workers/"+client.name, nil)
		if err == nil && p == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed agent's ephemeral key is still there after 40 s: %+v %v", p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ephemeral key gone %v after SIGKILL of its agent (memberlist LAN timing)", time.Since(killed).Round(10*time.Millisecond))
}

package agent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestSessionsAndLocksWithConsulClient(t *testing.T) {
	a := startDev(t, func(c *Config) { c.NodeName = "n1" })
	c := clientFor(t, a)
	sess := c.Session()
	id, _, err := sess.Create(&api.SessionEntry{Name: "web-lock", LockDelay: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, meta, err := sess.Info(id, nil)
	if err != nil || info == nil {
		t.Fatalf("info: %+v %v", info, err)
	}
	if info.Node != "n1" || info.Behavior != "release" || info.LockDelay != 200*time.Millisecond ||
		len(info.NodeChecks) != 1 || info.NodeChecks[0] != "serfHealth" || meta.LastIndex == 0 {
		t.Fatalf("session entry %+v", info)
	}
	other, _, err := sess.Create(&api.SessionEntry{Behavior: "delete", TTL: "10s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _, _ := sess.List(nil)
	onNode, _, _ := sess.Node("n1", nil)
	if len(list) != 2 || len(onNode) != 2 {
		t.Fatalf("list %d, node %d", len(list), len(onNode))
	}
	if renewed, _, err := sess.Renew(other, nil); err != nil || renewed == nil || renewed.TTL != "10s" {
		t.Fatalf("renew: %+v %v", renewed, err)
	}

	kv := c.KV()
	ok, _, err := kv.Acquire(&api.KVPair{Key: "service/leader", Value: []byte("me"), Session: id}, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	p, _, _ := kv.Get("service/leader", nil)
	if p.Session != id || p.LockIndex != 1 {
		t.Fatalf("locked key %+v", p)
	}
	if ok, _, _ := kv.Acquire(&api.KVPair{Key: "service/leader", Session: other}, nil); ok {
		t.Fatal("a second session acquired a held lock")
	}
	// Ephemeral key of the delete-behaviour session.
	if ok, _, _ := kv.Acquire(&api.KVPair{Key: "ephemeral", Value: []byte("x"), Session: other}, nil); !ok {
		t.Fatal("acquire of the ephemeral key failed")
	}
	// Invalidation: the lock is released and lock-delay blocks re-acquisition briefly.
	if _, err := sess.Destroy(id, nil); err != nil {
		t.Fatal(err)
	}
	p, _, _ = kv.Get("service/leader", nil)
	if p == nil || p.Session != "" || string(p.Value) != "me" {
		t.Fatalf("after destroy the key must stay, unlocked: %+v", p)
	}
	if ok, _, _ := kv.Acquire(&api.KVPair{Key: "service/leader", Session: other}, nil); ok {
		t.Fatal("acquired inside the lock-delay")
	}
	waitFor(t, 5*time.Second, "the lock-delay to pass", func() bool {
		ok, _, _ := kv.Acquire(&api.KVPair{Key: "service/leader", Session: other}, nil)
		return ok
	})
	if ok, _, _ := kv.Release(&api.KVPair{Key: "service/leader", Session: other}, nil); !ok {
		t.Fatal("release by the holder failed")
	}
	if _, err := sess.Destroy(other, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("ephemeral", nil); p != nil {
		t.Fatalf("ephemeral key outlived its session: %+v", p)
	}
	if info, _, _ := sess.Info(other, nil); info != nil {
		t.Fatal("destroyed session still listed")
	}
	if _, _, err := sess.Renew(other, nil); err != nil {
		t.Fatalf("renew of a destroyed session: want (nil, nil) for 404, got %v", err)
	}
}

func TestSessionBadInput(t *testing.T) {
	a := startDev(t)
	base := "http://" + a.HTTPAddr()
	cases := []struct {
		method, path, body string
		code               int
		reason             string
	}{
		{"PUT", "/v1/session/create", `{"TTL":"5s"}`, 400, "Invalid Session TTL"},
		{"PUT", "/v1/session/create", `{"TTL":"100h"}`, 400, "Invalid Session TTL"},
		{"PUT", "/v1/session/create", `{"TTL":"soon"}`, 400, "invalid TTL"},
		{"PUT", "/v1/session/create", `{"Behavior":"explode"}`, 400, "Invalid Behavior"},
		{"PUT", "/v1/session/create", `{"LockDelay":"2m"}`, 400, "Invalid LockDelay"},
		{"PUT", "/v1/session/create", `{"Node":"ghost"}`, 400, "Missing node registration"},
		{"PUT", "/v1/session/create", `{"Checks":["service:web"]}`, 400, "Missing check"},
		{"PUT", "/v1/session/create", `{not json`, 400, "decode failed"},
		{"GET", "/v1/session/create", ``, 405, "not allowed"},
		{"PUT", "/v1/session/renew/", ``, 400, "Missing session ID"},
		{"PUT", "/v1/session/renew/nope", ``, 404, "not found"},
		{"PUT", "/v1/kv/k?acquire=nope", `v`, 400, "Invalid session"},
		{"PUT", "/v1/kv/k?acquire=", `v`, 400, "Missing session ID"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		buf := string(b)
		if resp.StatusCode != tc.code || !strings.Contains(buf, tc.reason) {
			t.Errorf("%s %s %s: %d %q, want %d %q", tc.method, tc.path, tc.body, resp.StatusCode, buf, tc.code, tc.reason)
		}
	}
	if list, _, _ := clientFor(t, a).Session().List(nil); len(list) != 0 {
		t.Fatalf("rejected requests created %d sessions", len(list))
	}
}

func TestSessionTTLExpiresAcrossLeaderChange(t *testing.T) {
	var servers []*Agent
	for i, name := range []string{"s1", "s2", "s3"} {
		join := ""
		if i > 0 {
			join = servers[0].SerfAddr()
		}
		servers = append(servers, startClusterAgent(t, name, 3, join))
	}
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf(servers) != nil })
	old := leaderOf(servers)
	var follower *Agent
	for _, s := range servers {
		if s != old {
			follower = s
			break
		}
	}
	c := clientFor(t, follower)
	// Consul's shortest TTL; with its grace the session lives until 20 s without renewal.
	id, _, err := c.Session().Create(&api.SessionEntry{TTL: "10s", Behavior: "delete", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.KV().Acquire(&api.KVPair{Key: "lease", Value: []byte("x"), Session: id}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	// The leader changes before the TTL runs out; the new leader must re-arm the timer.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	old.Shutdown(ctx)
	cancel()
	start := time.Now()
	// Every leader re-arms every session with the full grace, so the expiry is due 20 s
	// after the last change of leader, which a loaded machine may see more than once
	// (each change raises the term). Wait for that, with room for the election and the
	// invalidation's write, and never more than two minutes in all.
	var survivors []*Agent
	for _, s := range servers {
		if s != old {
			survivors = append(survivors, s)
		}
	}
	term := func() (highest uint64) {
		for _, s := range survivors {
			highest = max(highest, s.node.Term())
		}
		return highest
	}
	lastTerm, lastChange, changes := term(), start, 0
	for {
		p, _, err := c.KV().Get("lease", nil)
		if err == nil && p == nil {
			break
		}
		now := time.Now()
		if tm := term(); tm != lastTerm {
			lastTerm, lastChange, changes = tm, now, changes+1
		}
		if now.Sub(lastChange) > 30*time.Second || now.Sub(start) > 2*time.Minute {
			t.Fatalf("the unrenewed session did not expire: %v after the leader change, %v after the last of %d later changes of leader",
				now.Sub(start).Round(time.Millisecond), now.Sub(lastChange).Round(time.Millisecond), changes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < 15*time.Second {
		t.Fatalf("session expired %v after the leader change, before the new leader's full grace", took)
	}
	t.Logf("key deleted %v after the leader change (TTL 10s, grace 2x, timers re-armed by the new leader; %d later changes of leader)",
		time.Since(start).Round(time.Millisecond), changes)
	if info, _, _ := c.Session().Info(id, nil); info != nil {
		t.Fatal("expired session still exists")
	}
}

func TestSessionOfFailedNodeIsInvalidated(t *testing.T) {
	s1 := startClusterAgent(t, "s1", 3, "")
	s2 := startClusterAgent(t, "s2", 3, s1.SerfAddr())
	s3 := startClusterAgent(t, "s3", 3, s1.SerfAddr())
	c1 := startClusterAgent(t, "c1", 0, s1.SerfAddr())
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf([]*Agent{s1, s2, s3}) != nil })
	cc := clientFor(t, c1)
	var id string
	waitFor(t, 10*time.Second, "a session on the client agent's node", func() bool {
		var err error
		id, _, err = cc.Session().Create(&api.SessionEntry{Behavior: "delete"}, nil)
		return err == nil
	})
	if info, _, _ := cc.Session().Info(id, nil); info == nil || info.Node != "c1" {
		t.Fatalf("session created through c1 belongs to %+v", info)
	}
	if ok, _, _ := cc.KV().Acquire(&api.KVPair{Key: "workers/c1", Value: []byte("alive"), Session: id}, nil); !ok {
		t.Fatal("acquire failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c1.Shutdown(ctx) // a crash: no leave
	cancel()
	start := time.Now()
	kv := clientFor(t, s2).KV()
	waitFor(t, 20*time.Second, "the failed node's ephemeral key to vanish", func() bool {
		p, _, err := kv.Get("workers/c1", nil)
		return err == nil && p == nil
	})
	t.Logf("ephemeral key gone %v after the node crashed (fast gossip timing)", time.Since(start).Round(time.Millisecond))
}

func TestConsulClientLockAndSemaphore(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	l1, err := c.LockOpts(&api.LockOptions{Key: "locks/job", SessionTTL: "10s", LockWaitTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := l1.Lock(nil)
	if err != nil || lost == nil {
		t.Fatalf("lock: %v", err)
	}
	l2, _ := c.LockOpts(&api.LockOptions{Key: "locks/job", SessionTTL: "10s", LockTryOnce: true, LockWaitTime: 200 * time.Millisecond})
	if ch, err := l2.Lock(nil); err != nil || ch != nil {
		t.Fatalf("second locker got the held lock: %v %v", ch, err)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatal(err)
	}
	l3, _ := c.LockOpts(&api.LockOptions{Key: "locks/job", SessionTTL: "10s", LockTryOnce: true, LockWaitTime: 2 * time.Second})
	if ch, err := l3.Lock(nil); err != nil || ch == nil {
		t.Fatalf("lock after unlock: %v %v", ch, err)
	}
	l3.Unlock()

	s1, _ := c.SemaphorePrefix("sema/", 2)
	s2, _ := c.SemaphorePrefix("sema/", 2)
	s3, _ := c.SemaphoreOpts(&api.SemaphoreOptions{Prefix: "sema/", Limit: 2, SemaphoreTryOnce: true, SemaphoreWaitTime: 200 * time.Millisecond})
	if ch, err := s1.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("semaphore slot 1: %v", err)
	}
	if ch, err := s2.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("semaphore slot 2: %v", err)
	}
	if ch, err := s3.Acquire(nil); err != nil || ch != nil {
		t.Fatalf("a third holder got a 2-slot semaphore: %v", err)
	}
	s1.Release()
	s2.Release()
}

func TestSessionBoundToCheckIsInvalidatedWhenItTurnsCritical(t *testing.T) {
	a := startDev(t, func(c *Config) { c.NodeName = "n1" })
	c := clientFor(t, a)
	if err := c.Agent().CheckRegister(&api.AgentCheckRegistration{ID: "disk", Name: "disk",
		AgentServiceCheck: api.AgentServiceCheck{TTL: "1m", Status: "passing"}}); err != nil {
		t.Fatal(err)
	}
	// The check must be in the catalog before a session can bind to it.
	var id string
	waitFor(t, 5*time.Second, "a session bound to disk", func() bool {
		var err error
		id, _, err = c.Session().Create(&api.SessionEntry{Behavior: "delete", NodeChecks: []string{"serfHealth", "disk"}}, nil)
		return err == nil
	})
	if _, _, err := c.Session().Create(&api.SessionEntry{NodeChecks: []string{"nope"}}, nil); err == nil {
		t.Fatal("a session bound to a missing check was created")
	}
	if ok, _, _ := c.KV().Acquire(&api.KVPair{Key: "owned-by-disk", Value: []byte("x"), Session: id}, nil); !ok {
		t.Fatal("acquire failed")
	}
	if err := c.Agent().FailTTL("disk", "full"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the session of a critical check invalidated", func() bool {
		p, _, err := c.KV().Get("owned-by-disk", nil)
		info, _, _ := c.Session().Info(id, nil)
		return err == nil && p == nil && info == nil
	})
	if _, _, err := c.Session().Create(&api.SessionEntry{NodeChecks: []string{"disk"}}, nil); err == nil || !strings.Contains(err.Error(), "critical") {
		t.Fatalf("a session bound to a critical check: %v", err)
	}
}

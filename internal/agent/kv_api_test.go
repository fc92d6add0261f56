package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// These tests drive the agent with Consul's own Go client, so they fail when a path,
// parameter, header or JSON field differs from what real clients expect.

func TestConsulClientKVBasics(t *testing.T) {
	kv := clientFor(t, startDev(t)).KV()

	if _, err := kv.Put(&api.KVPair{Key: "app/config", Flags: 42, Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	pair, meta, err := kv.Get("app/config", nil)
	if err != nil || pair == nil {
		t.Fatalf("get: %v %v", pair, err)
	}
	if string(pair.Value) != "v1" || pair.Flags != 42 || pair.CreateIndex == 0 || pair.ModifyIndex != meta.LastIndex {
		t.Fatalf("pair %+v, meta index %d", pair, meta.LastIndex)
	}
	if !meta.KnownLeader {
		t.Fatal("X-Consul-KnownLeader not true on a single server")
	}

	missing, meta, err := kv.Get("app/none", nil)
	if err != nil || missing != nil {
		t.Fatalf("missing key: %v %v", missing, err)
	}
	if meta.LastIndex == 0 {
		t.Fatal("404 without X-Consul-Index")
	}

	for _, k := range []string{"app/a", "app/b/c", "app/b/d", "other"} {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte(k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	list, _, err := kv.List("app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range list {
		keys = append(keys, p.Key)
	}
	if want := []string{"app/a", "app/b/c", "app/b/d", "app/config"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("list = %v, want %v", keys, want)
	}
	folded, _, err := kv.Keys("app/", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"app/a", "app/b/", "app/config"}; !reflect.DeepEqual(folded, want) {
		t.Fatalf("keys = %v, want %v", folded, want)
	}

	// Empty values come back as empty, not as the string "null".
	if _, err := kv.Put(&api.KVPair{Key: "empty"}, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("empty", nil); p == nil || len(p.Value) != 0 {
		t.Fatalf("empty value: %+v", p)
	}
	// Binary values survive the round trip.
	bin := []byte{0, 1, 2, 0xff, '"', '\\'}
	kv.Put(&api.KVPair{Key: "bin", Value: bin}, nil)
	if p, _, _ := kv.Get("bin", nil); p == nil || !bytes.Equal(p.Value, bin) {
		t.Fatalf("binary value: %+v", p)
	}
}

func TestConsulClientCAS(t *testing.T) {
	kv := clientFor(t, startDev(t)).KV()
	ok, _, err := kv.CAS(&api.KVPair{Key: "lock", Value: []byte("a"), ModifyIndex: 0}, nil)
	if err != nil || !ok {
		t.Fatalf("create-only CAS on a missing key: %v %v", ok, err)
	}
	ok, _, _ = kv.CAS(&api.KVPair{Key: "lock", Value: []byte("b"), ModifyIndex: 0}, nil)
	if ok {
		t.Fatal("create-only CAS on an existing key succeeded")
	}
	p, _, _ := kv.Get("lock", nil)
	ok, _, _ = kv.CAS(&api.KVPair{Key: "lock", Value: []byte("c"), ModifyIndex: p.ModifyIndex + 1}, nil)
	if ok {
		t.Fatal("CAS with a wrong index succeeded")
	}
	ok, _, _ = kv.CAS(&api.KVPair{Key: "lock", Value: []byte("d"), ModifyIndex: p.ModifyIndex}, nil)
	if !ok {
		t.Fatal("CAS with the right index failed")
	}
	p, _, _ = kv.Get("lock", nil)
	if string(p.Value) != "d" {
		t.Fatalf("value %q after CAS", p.Value)
	}

	ok, _, _ = kv.DeleteCAS(&api.KVPair{Key: "lock", ModifyIndex: p.ModifyIndex - 1}, nil)
	if ok {
		t.Fatal("DeleteCAS with a wrong index succeeded")
	}
	ok, _, err = kv.DeleteCAS(&api.KVPair{Key: "lock", ModifyIndex: p.ModifyIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("DeleteCAS with the right index: %v %v", ok, err)
	}
	if p, _, _ := kv.Get("lock", nil); p != nil {
		t.Fatal("key still there after DeleteCAS")
	}
}

func TestConsulClientDeleteTree(t *testing.T) {
	kv := clientFor(t, startDev(t)).KV()
	for i := 0; i < 10; i++ {
		kv.Put(&api.KVPair{Key: fmt.Sprintf("tree/%d", i), Value: []byte("x")}, nil)
	}
	kv.Put(&api.KVPair{Key: "treehouse", Value: []byte("x")}, nil)
	if _, err := kv.DeleteTree("tree/", nil); err != nil {
		t.Fatal(err)
	}
	left, _, _ := kv.Keys("tree", "", nil)
	if !reflect.DeepEqual(left, []string{"treehouse"}) {
		t.Fatalf("left after DeleteTree: %v", left)
	}
	if _, err := kv.Delete("treehouse", nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("treehouse", nil); p != nil {
		t.Fatal("Delete left the key")
	}
}

func TestConsulClientBlockingGet(t *testing.T) {
	kv := clientFor(t, startDev(t)).KV()
	kv.Put(&api.KVPair{Key: "watched", Value: []byte("1")}, nil)
	_, meta, _ := kv.Get("watched", nil)

	type result struct {
		pair *api.KVPair
		meta *api.QueryMeta
		err  error
		took time.Duration
	}
	got := make(chan result, 1)
	go func() {
		start := time.Now()
		p, m, err := kv.Get("watched", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		got <- result{p, m, err, time.Since(start)}
	}()
	// Unrelated writes must not answer the blocked read.
	for i := 0; i < 5; i++ {
		kv.Put(&api.KVPair{Key: fmt.Sprintf("unrelated/%d", i), Value: []byte("x")}, nil)
	}
	select {
	case r := <-got:
		t.Fatalf("blocking read returned on unrelated writes: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	kv.Put(&api.KVPair{Key: "watched", Value: []byte("2")}, nil)
	select {
	case r := <-got:
		if r.err != nil || string(r.pair.Value) != "2" || r.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("after change: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocking read did not wake on a write of its key")
	}

	// A blocking read of a key that does not exist wakes when it is created, and only then.
	_, m404, _ := kv.Get("later", nil)
	go func() {
		start := time.Now()
		p, m, err := kv.Get("later", &api.QueryOptions{WaitIndex: m404.LastIndex, WaitTime: 10 * time.Second})
		got <- result{p, m, err, time.Since(start)}
	}()
	kv.Put(&api.KVPair{Key: "lateral", Value: []byte("x")}, nil)
	select {
	case r := <-got:
		t.Fatalf("missing-key read returned on a neighbour's write: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	kv.Put(&api.KVPair{Key: "later", Value: []byte("here")}, nil)
	select {
	case r := <-got:
		if r.err != nil || r.pair == nil || string(r.pair.Value) != "here" {
			t.Fatalf("after creation: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("missing-key read did not wake on creation")
	}

	// Timeout: same index back, current data, after about the wait (plus jitter ≤ 1/16).
	start := time.Now()
	p, m, err := kv.Get("later", &api.QueryOptions{WaitIndex: 0, WaitTime: time.Second})
	if err != nil || p == nil {
		t.Fatal(err)
	}
	p, m2, err := kv.Get("later", &api.QueryOptions{WaitIndex: m.LastIndex, WaitTime: 300 * time.Millisecond})
	took := time.Since(start)
	if err != nil || p == nil || m2.LastIndex != m.LastIndex {
		t.Fatalf("timeout answer: %+v %+v %v", p, m2, err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("blocking read with wait=300ms took %v", took)
	}
}

func TestBlockingListWakesOnDeleteUnderPrefix(t *testing.T) {
	kv := clientFor(t, startDev(t)).KV()
	kv.Put(&api.KVPair{Key: "svc/a", Value: []byte("1")}, nil)
	kv.Put(&api.KVPair{Key: "svc/b", Value: []byte("1")}, nil)
	_, meta, _ := kv.List("svc/", nil)
	done := make(chan api.KVPairs, 1)
	go func() {
		l, _, _ := kv.List("svc/", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		done <- l
	}()
	kv.Delete("svc/a", nil)
	select {
	case l := <-done:
		if len(l) != 1 || l[0].Key != "svc/b" {
			t.Fatalf("after delete: %v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("prefix read did not wake on a delete under it")
	}
}

func TestStatusAndSelf(t *testing.T) {
	c := clientFor(t, startDev(t, func(c *Config) { c.NodeName = "node-x"; c.Datacenter = "eu1" }))
	leader, err := c.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader %q %v", leader, err)
	}
	peers, err := c.Status().Peers()
	if err != nil || len(peers) != 1 || peers[0] != leader {
		t.Fatalf("peers %v %v (leader %s)", peers, err, leader)
	}
	name, err := c.Agent().NodeName()
	if err != nil || name != "node-x" {
		t.Fatalf("node name %q %v", name, err)
	}
	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "eu1" || self["Member"]["Name"] != "node-x" {
		t.Fatalf("self %v %v", self, err)
	}
}

// TestConsulClientOverH2C drives the API over HTTP/2 without TLS (prior knowledge):
// Consul's client with a Transport that speaks nothing else gets the same answers,
// and a blocking query and writes share one connection.
func TestConsulClientOverH2C(t *testing.T) {
	a := startDev(t)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	var conns atomic.Int32
	transport := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(transport.CloseIdleConnections)
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = a.HTTPAddr()
	cfg.HttpClient = &http.Client{Transport: transport}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv := c.KV()
	if _, err := kv.Put(&api.KVPair{Key: "h2/a", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	pair, meta, err := kv.Get("h2/a", nil)
	if err != nil || pair == nil || string(pair.Value) != "v1" {
		t.Fatalf("get: %+v %v", pair, err)
	}

	// A blocking query held open while a write goes over the same connection.
	woke := make(chan *api.KVPair, 1)
	go func() {
		p, _, err := kv.Get("h2/a", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		if err != nil {
			t.Errorf("blocking get: %v", err)
		}
		woke <- p
	}()
	// Write until the query answers: a write before it was sent makes it answer at
	// once, one after wakes it; either way it must see v2.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := kv.Put(&api.KVPair{Key: "h2/a", Value: []byte("v2")}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-woke:
			if p == nil || string(p.Value) != "v2" {
				t.Fatalf("blocking get woke with %+v", p)
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections for three requests at once, want 1 (multiplexed)", n)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("blocking get did not wake on a write")
		}
	}
}

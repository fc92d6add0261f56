package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/eventlog"
	"github.com/wolke-platform/wolke/internal/membership"
)

// eventIDs lists the IDs of the events named name on agent c.
func eventIDs(t testing.TB, c *api.Client, name string) []string {
	t.Helper()
	evs, _, err := c.Event().List(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

func hasID(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// eventGossip is fastGossip with LAN retransmits. memberlist's local profile sends each
// broadcast RetransmitMult*ceil(log10(n+1)) = 2 times in a 4-node pool, so it reaches 2
// of the 3 peers per holder, and relays miss a node about once in 9 events; that node
// then gets the event only from the next push/pull, which carries serf's recent events.
// With the LAN factor (4) the sender reaches every peer at once, and a 1 s push/pull
// repairs a lost packet quickly.
func eventGossip(c *Config) {
	c.Gossip = func(mc *membership.Config) {
		fastGossip(mc)
		mc.Memberlist.RetransmitMult = 4
		mc.Memberlist.PushPullInterval = time.Second
	}
}

// TestEventsSpreadToEveryAgent fires on a client agent of a 3-server cluster and sees
// the event on every agent, wakes a blocking list, and checks the node filter.
func TestEventsSpreadToEveryAgent(t *testing.T) {
	s1 := startClusterAgentWith(t, "s1", 3, "", eventGossip)
	s2 := startClusterAgentWith(t, "s2", 3, s1.SerfAddr(), eventGossip)
	s3 := startClusterAgentWith(t, "s3", 3, s1.SerfAddr(), eventGossip)
	c1 := startClusterAgentWith(t, "c1", 0, s1.SerfAddr(), eventGossip)
	agents := []*Agent{s1, s2, s3, c1}
	// Join every agent to every other: a join's push/pull makes the view complete at
	// once, where one lost broadcast would leave it to the next periodic sync (15 s).
	var addrs []string
	for _, a := range agents {
		addrs = append(addrs, a.SerfAddr())
	}
	for _, a := range agents {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := a.pool.Join(ctx, addrs)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range agents {
		waitFor(t, 10*time.Second, a.cfg.NodeName+" to see 4 members", func() bool { return a.pool.NumAlive() == 4 })
	}

	fire := func(from *Agent, ev *api.UserEvent) string {
		t.Helper()
		id, _, err := clientFor(t, from).Event().Fire(ev, nil)
		if err != nil {
			t.Fatalf("fire %q on %s: %v", ev.Name, from.cfg.NodeName, err)
		}
		return id
	}

	id1 := fire(c1, &api.UserEvent{Name: "deploy", Payload: []byte("v1.2.3")})
	for _, a := range agents {
		c := clientFor(t, a)
		waitFor(t, 10*time.Second, "the event on "+a.cfg.NodeName, func() bool { return hasID(eventIDs(t, c, "deploy"), id1) })
		evs, meta, err := c.Event().List("deploy", nil)
		if err != nil {
			t.Fatal(err)
		}
		last := evs[len(evs)-1]
		if last.ID != id1 || string(last.Payload) != "v1.2.3" || last.Version != 1 || last.LTime == 0 {
			t.Fatalf("%s: event %+v", a.cfg.NodeName, last)
		}
		if meta.LastIndex != c.Event().IDToIndex(id1) {
			t.Fatalf("%s: index %d, want IDToIndex(%s) = %d", a.cfg.NodeName, meta.LastIndex, id1, c.Event().IDToIndex(id1))
		}
	}

	t.Run("blocking list wakes on a new event", func(t *testing.T) {
		c := clientFor(t, s3)
		_, meta, err := c.Event().List("deploy", nil)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			evs []*api.UserEvent
			idx uint64
			err error
		}
		done := make(chan result, 1)
		go func() {
			evs, m, err := c.Event().List("deploy", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
			r := result{evs: evs, err: err}
			if m != nil {
				r.idx = m.LastIndex
			}
			done <- r
		}()
		waitFor(t, 5*time.Second, "the list to block", func() bool { return blockingQueries(t, s3) == 1 })
		// An event of another name wakes the query, which keeps waiting.
		fire(s1, &api.UserEvent{Name: "other"})
		waitFor(t, 10*time.Second, "the other event on s3", func() bool { return len(eventIDs(t, c, "other")) == 1 })
		select {
		case r := <-done:
			t.Fatalf("list returned on another name's event: %+v", r)
		default:
		}
		id2 := fire(s1, &api.UserEvent{Name: "deploy", Payload: []byte("v1.2.4")})
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if n := len(r.evs); n < 2 || r.evs[n-1].ID != id2 || r.evs[n-2].ID != id1 {
				t.Fatalf("woken list: %d events, want ..., %s, %s", n, id1, id2)
			}
			if r.idx != c.Event().IDToIndex(id2) {
				t.Fatalf("woken list index %d, want %d", r.idx, c.Event().IDToIndex(id2))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocking list did not wake on a new event")
		}
	})

	t.Run("node filter", func(t *testing.T) {
		before := make(map[*Agent]uint64)
		for _, a := range agents {
			before[a] = a.events.Stats().Filtered
		}
		id := fire(c1, &api.UserEvent{Name: "only-s2", NodeFilter: "^s2$"})
		waitFor(t, 10*time.Second, "the filtered event on s2", func() bool {
			return hasID(eventIDs(t, clientFor(t, s2), "only-s2"), id)
		})
		for _, a := range []*Agent{s1, s3, c1} {
			// The event reached the agent and was dropped by its filter.
			waitFor(t, 10*time.Second, "the event to reach "+a.cfg.NodeName, func() bool {
				return a.events.Stats().Filtered > before[a]
			})
			if ids := eventIDs(t, clientFor(t, a), "only-s2"); len(ids) != 0 {
				t.Fatalf("%s keeps an event filtered to s2: %v", a.cfg.NodeName, ids)
			}
		}
	})
}

func TestEventFireAndListHTTP(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	base := "http://" + a.HTTPAddr()
	do := func(method, path string, body []byte) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// An empty list answers [] with index 1 and the read headers.
	resp, body := do("GET", "/v1/event/list", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" || resp.Header.Get("X-Consul-Index") != "1" ||
		resp.Header.Get("X-Consul-Knownleader") == "" || resp.Header.Get("X-Consul-Lastcontact") == "" {
		t.Fatalf("empty list: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	for _, tc := range []struct {
		name, method, path string
		body               []byte
		code               int
		reason             string
	}{
		{"missing name", "PUT", "/v1/event/fire/", nil, 400, "Missing name"},
		{"bad node regexp", "PUT", "/v1/event/fire/x?node=web-(", nil, 400, "Invalid node filter"},
		{"bad service regexp", "PUT", "/v1/event/fire/x?service=[a-", nil, 400, "Invalid service filter"},
		{"bad tag regexp", "PUT", "/v1/event/fire/x?service=a&tag=*", nil, 400, "Invalid tag filter"},
		{"tag without service", "PUT", "/v1/event/fire/x?tag=v1", nil, 400, "Cannot provide tag filter without service filter"},
		{"body over the gossip limit", "PUT", "/v1/event/fire/x", bytes.Repeat([]byte("p"), 600), 413, "512-byte"},
		{"encoded event over the limit", "PUT", "/v1/event/fire/x", bytes.Repeat([]byte("p"), 500), 413, "512-byte limit"},
		{"GET on fire", "GET", "/v1/event/fire/x", nil, 405, "method GET not allowed"},
		{"PUT on list", "PUT", "/v1/event/list", nil, 405, "method PUT not allowed"},
		{"bad index", "GET", "/v1/event/list?index=x", nil, 400, "Invalid index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.reason) {
				t.Fatalf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.reason)
			}
		})
	}

	// Through consul/api, the client users have, the status codes survive.
	if _, _, err := c.Event().Fire(&api.UserEvent{Name: "x", NodeFilter: "("}, nil); statusCode(err) != 400 {
		t.Fatalf("bad regexp via consul/api: %v", err)
	}
	if _, _, err := c.Event().Fire(&api.UserEvent{Name: "x", Payload: make([]byte, 480)}, nil); statusCode(err) != 413 {
		t.Fatalf("large payload via consul/api: %v", err)
	}

	// POST (Spring Cloud Consul's bus) fires too, and the answer is the UserEvent.
	resp, body = do("POST", "/v1/event/fire/spring?node=.&service=api&tag=v1", []byte("hi"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST fire: %d %q", resp.StatusCode, body)
	}
	for _, want := range []string{`"Name":"spring"`, `"Payload":"aGk="`, `"NodeFilter":"."`, `"ServiceFilter":"api"`,
		`"TagFilter":"v1"`, `"Version":1`, `"LTime":0`, `"ID":"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("fire answer %s lacks %s", body, want)
		}
	}

	// The largest payload the name leaves room for passes serf's own checks too.
	maxPayload := eventlog.MaxPayload(eventlog.UserEvent{ID: "00000000-0000-4000-8000-000000000000", Name: "big", Version: 1})
	id, _, err := c.Event().Fire(&api.UserEvent{Name: "big", Payload: bytes.Repeat([]byte("b"), maxPayload)}, nil)
	if err != nil {
		t.Fatalf("payload of %d bytes (the maximum): %v", maxPayload, err)
	}
	waitFor(t, 5*time.Second, "the big event", func() bool { return hasID(eventIDs(t, c, "big"), id) })
	if _, _, err := c.Event().Fire(&api.UserEvent{Name: "big", Payload: bytes.Repeat([]byte("b"), maxPayload+1)}, nil); statusCode(err) != 413 {
		t.Fatalf("payload of %d bytes: %v", maxPayload+1, err)
	}

	// A blocking list whose index is current waits out ?wait and answers the same index.
	_, meta, err := c.Event().List("big", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, meta2, err := c.Event().List("big", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if meta2.LastIndex != meta.LastIndex || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("timed-out list: index %d -> %d after %v", meta.LastIndex, meta2.LastIndex, time.Since(start))
	}
	// A stale index answers at once.
	_, meta3, err := c.Event().List("big", &api.QueryOptions{WaitIndex: meta.LastIndex + 1, WaitTime: time.Minute})
	if err != nil || meta3.LastIndex != meta.LastIndex {
		t.Fatalf("list with another index: %v, index %d", err, meta3.LastIndex)
	}
}

// Gossip may deliver an event more than once; the agent keeps it once. User events
// that are not Consul-style events, or cannot be decoded, are dropped.
func TestReceiveEventDeduplicatesAndIgnoresForeign(t *testing.T) {
	a := startDev(t)
	ev := eventlog.UserEvent{ID: newUUID(), Name: "dup", Payload: []byte("x"), Version: 1}
	name, payload, err := eventlog.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.receiveEvent(membership.UserEvent{Name: name, Payload: payload, LTime: uint64(10 + i)})
	}
	a.receiveEvent(membership.UserEvent{Name: "wolke:something-else", Payload: payload, LTime: 20})
	a.receiveEvent(membership.UserEvent{Name: eventlog.SerfPrefix + "dup", Payload: []byte("garbage"), LTime: 21})
	evs, _, _ := a.ListEvents("")
	if len(evs) != 1 || evs[0].ID != ev.ID || evs[0].LTime != 10 {
		t.Fatalf("events after 3 deliveries and 2 foreign ones: %+v", evs)
	}
	if st := a.events.Stats(); st.Stored != 1 || st.Duplicates != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// The index header is the one consul/api's IDToIndex computes, as a decimal string.
func TestEventIndexHeader(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	id, _, err := c.Event().Fire(&api.UserEvent{Name: "idx"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the event", func() bool { return hasID(eventIDs(t, c, "idx"), id) })
	resp, err := http.Get("http://" + a.HTTPAddr() + "/v1/event/list?name=idx")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("X-Consul-Index"), strconv.FormatUint(c.Event().IDToIndex(id), 10); got != want {
		t.Fatalf("X-Consul-Index %s, want %s", got, want)
	}
}

func TestEventServiceFilterUsesLocalServices(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Tags: []string{"blue"}}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*api.UserEvent{
		{Name: "deploy", Payload: []byte("web"), ServiceFilter: "^web$"},
		{Name: "deploy", Payload: []byte("web-green"), ServiceFilter: "^web$", TagFilter: "^green$"},
		{Name: "deploy", Payload: []byte("db"), ServiceFilter: "^db$"},
		{Name: "deploy", Payload: []byte("web-blue"), ServiceFilter: "^web$", TagFilter: "^blue$"},
	} {
		if _, _, err := c.Event().Fire(ev, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the events for this agent's services", func() bool {
		list, _, err := c.Event().List("deploy", nil)
		if err != nil || len(list) != 2 {
			return false
		}
		return string(list[0].Payload) == "web" && string(list[1].Payload) == "web-blue"
	})
}

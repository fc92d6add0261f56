package membership

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

func TestStatusNumbersAndNames(t *testing.T) {
	// Consul's numbers, as /v1/agent/members reports them, and serf's.
	for _, c := range []struct {
		s    Status
		serf serf.MemberStatus
		n    int
		name string
	}{
		{StatusNone, serf.StatusNone, 0, "none"},
		{StatusAlive, serf.StatusAlive, 1, "alive"},
		{StatusLeaving, serf.StatusLeaving, 2, "leaving"},
		{StatusLeft, serf.StatusLeft, 3, "left"},
		{StatusFailed, serf.StatusFailed, 4, "failed"},
	} {
		if int(c.s) != c.n || int(c.serf) != c.n || c.s.String() != c.name {
			t.Errorf("%v: number %d, serf %d, name %q", c.s, int(c.s), int(c.serf), c.s.String())
		}
	}
	if Status(9).String() != "unknown(9)" {
		t.Error(Status(9).String())
	}
}

func TestMemberHelpers(t *testing.T) {
	server := Member{Addr: "10.0.0.1", Tags: map[string]string{
		TagRole: RoleServer, TagPort: "8300", TagID: "abc", TagDatacenter: "dc2", TagExpect: "3", TagBuild: "1.2.3"}}
	if !server.IsServer() || server.RPCAddr() != "10.0.0.1:8300" || server.ID() != "abc" ||
		server.Datacenter() != "dc2" || server.Expect() != 3 || server.Build() != "1.2.3" {
		t.Errorf("server helpers: %v %q %q %q %d", server.IsServer(), server.RPCAddr(), server.ID(), server.Datacenter(), server.Expect())
	}
	v6 := Member{Addr: "::1", Tags: map[string]string{TagPort: "8300"}}
	if v6.RPCAddr() != "[::1]:8300" {
		t.Errorf("IPv6 RPCAddr %q", v6.RPCAddr())
	}
	client := Member{Addr: "10.0.0.2", Tags: map[string]string{TagRole: RoleClient, TagExpect: "x"}}
	if client.IsServer() || client.RPCAddr() != "" || client.Expect() != 0 {
		t.Errorf("client helpers: %v %q %d", client.IsServer(), client.RPCAddr(), client.Expect())
	}
	bad := Member{Addr: "10.0.0.3", Tags: map[string]string{TagPort: "70000"}}
	if bad.RPCAddr() != "" {
		t.Errorf("bad port gives %q", bad.RPCAddr())
	}
}

func TestFromSerfEvent(t *testing.T) {
	m1 := serf.Member{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 8301, Tags: map[string]string{"k": "v"}, Status: serf.StatusFailed}
	m2 := serf.Member{Name: "b", Addr: []byte{127, 0, 0, 2}, Port: 8301, Status: serf.StatusFailed}
	evs := fromSerfEvent(serf.MemberEvent{Type: serf.EventMemberFailed, Members: []serf.Member{m1, m2}})
	if len(evs) != 2 || evs[0].Type != EventMemberFailed || evs[0].Member.Name != "a" ||
		evs[0].Member.Addr != "127.0.0.1" || evs[0].Member.Status != StatusFailed || evs[1].Member.Name != "b" {
		t.Fatalf("member event: %+v", evs)
	}
	m1.Tags["k"] = "changed"
	if evs[0].Member.Tags["k"] != "v" {
		t.Error("event shares the tag map with serf")
	}
	for st, want := range map[serf.EventType]EventType{
		serf.EventMemberJoin: EventMemberJoin, serf.EventMemberLeave: EventMemberLeave,
		serf.EventMemberUpdate: EventMemberUpdate, serf.EventMemberReap: EventMemberReap,
	} {
		if e := fromSerfEvent(serf.MemberEvent{Type: st, Members: []serf.Member{m1}}); len(e) != 1 || e[0].Type != want {
			t.Errorf("%v -> %+v", st, e)
		}
	}
	u := fromSerfEvent(serf.UserEvent{LTime: 7, Name: "deploy", Payload: []byte("p"), Coalesce: true})
	if len(u) != 1 || u[0].Type != EventUser || u[0].User.Name != "deploy" || u[0].User.LTime != 7 ||
		string(u[0].User.Payload) != "p" || !u[0].User.Coalesce {
		t.Errorf("user event: %+v", u)
	}
	if e := fromSerfEvent(&serf.Query{Name: "q"}); len(e) != 0 {
		t.Errorf("query gave %+v", e)
	}
	names := []string{}
	for typ := EventMemberJoin; typ <= EventUser; typ++ {
		names = append(names, typ.String())
	}
	if got := strings.Join(names, ","); got != "member-join,member-leave,member-failed,member-update,member-reap,user" {
		t.Error(got)
	}
}

func TestJoinAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":       "10.0.0.1:8301",
		"10.0.0.1:9301":  "10.0.0.1:9301",
		"::1":            "[::1]:8301",
		"[::1]":          "[::1]:8301",
		"[::1]:9301":     "[::1]:9301",
		"node1":          "node1:8301",
		"node1.dc1:7000": "node1.dc1:7000",
	} {
		if got, err := joinAddr(in); err != nil || got != want {
			t.Errorf("joinAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":8301", "10.0.0.1:0", "10.0.0.1:x", "10.0.0.1:99999", "a:b:c"} {
		if got, err := joinAddr(in); err == nil {
			t.Errorf("joinAddr(%q) = %q, want an error", in, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	d := DefaultConfig()
	if d.BindPort != 8301 || d.RetryInterval != 30*time.Second || d.NodeName == "" || d.Memberlist != nil {
		t.Errorf("defaults: %+v", d)
	}
	for name, mut := range map[string]func(*Config){
		"empty name":         func(c *Config) { c.NodeName = "" },
		"long name":          func(c *Config) { c.NodeName = strings.Repeat("n", 129) },
		"bind not IP":        func(c *Config) { c.BindAddr = "localhost" },
		"advertise not IP":   func(c *Config) { c.AdvertiseAddr = "host" },
		"bind port":          func(c *Config) { c.BindPort = 70000 },
		"advertise port":     func(c *Config) { c.AdvertisePort = -1 },
		"retry join address": func(c *Config) { c.RetryJoin = []string{"10.0.0.1:x"} },
		"retry interval":     func(c *Config) { c.RetryInterval = 0 },
		"retry max":          func(c *Config) { c.RetryMax = -1 },
		"event buffer":       func(c *Config) { c.EventBuffer = 0 },
		"propagate delay":    func(c *Config) { c.LeavePropagateDelay = -time.Second },
		"reconnect timeout":  func(c *Config) { c.ReconnectTimeout = 0 },
		"memberlist timing":  func(c *Config) { c.Memberlist = fastMemberlist(); c.Memberlist.ProbeInterval = 0 },
		"suspicion mult":     func(c *Config) { c.Memberlist = fastMemberlist(); c.Memberlist.SuspicionMult = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLogBridgeLevels(t *testing.T) {
	var buf bytes.Buffer
	l := stdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[DEBUG] memberlist: noisy")
	l.Printf("[INFO] serf: EventMemberJoin: a 127.0.0.1")
	l.Printf("[WARN] memberlist: Was able to connect to b over TCP but UDP probes failed")
	l.Printf("[ERR] serf: Node name conflicts with another node")
	l.Printf("no prefix at all")
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="EventMemberJoin: a 127.0.0.1" component=serf`,
		`level=WARN msg="Was able to connect to b over TCP but UDP probes failed" component=memberlist`,
		`level=ERROR msg="Node name conflicts with another node" component=serf`,
		`level=INFO msg="no prefix at all" component=membership`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, "noisy") {
		t.Error("debug line passed an info-level handler")
	}
}

package dns

import (
	"context"
	"errors"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeCatalog is an in-memory Catalog. Service and node names are matched without
// regard to case, as the real catalog does.
type fakeCatalog struct {
	mu       sync.Mutex
	dc       string
	services map[string][]Instance
	nodes    map[string]NodeInfo
	err      error // returned by every call when set
	panicMsg string
}

var _ Catalog = (*fakeCatalog)(nil)

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{dc: "dc1", services: map[string][]Instance{}, nodes: map[string]NodeInfo{}}
}

func (c *fakeCatalog) addService(name string, insts ...Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.services[strings.ToLower(name)] = append(c.services[strings.ToLower(name)], insts...)
}

func (c *fakeCatalog) addNode(n NodeInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[strings.ToLower(n.Name)] = n
}

func (c *fakeCatalog) ServiceInstances(_ context.Context, service, tag string) ([]Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.panicMsg != "" {
		panic(c.panicMsg)
	}
	if c.err != nil {
		return nil, c.err
	}
	all := c.services[strings.ToLower(service)]
	out := make([]Instance, 0, len(all))
	for _, in := range all {
		if tag == "" || slices.ContainsFunc(in.Tags, func(t string) bool { return strings.EqualFold(t, tag) }) {
			out = append(out, in)
		}
	}
	return out, nil
}

func (c *fakeCatalog) Node(_ context.Context, name string) (NodeInfo, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return NodeInfo{}, false, c.err
	}
	n, ok := c.nodes[strings.ToLower(name)]
	return n, ok, nil
}

func (c *fakeCatalog) Datacenter() string { return c.dc }

// fixtureCatalog is the catalog most tests query.
func fixtureCatalog() *fakeCatalog {
	c := newFakeCatalog()
	c.addNode(NodeInfo{Name: "node1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1", "rfc1035-raw": "v=spf1"}})
	c.addNode(NodeInfo{Name: "node2", Address: "10.0.0.2"})
	c.addNode(NodeInfo{Name: "node3", Address: "10.0.0.3"})
	c.addNode(NodeInfo{Name: "node6", Address: "2001:db8::6"})
	c.addNode(NodeInfo{Name: "hostnode", Address: "db.example.org"})
	c.addNode(NodeInfo{Name: "server1", Address: "10.0.0.100"})
	c.addService("web",
		Instance{Node: "node1", NodeAddress: "10.0.0.1", Port: 8080, Tags: []string{"v1", "primary"}, Health: HealthPassing},
		Instance{Node: "node2", NodeAddress: "10.0.0.2", Port: 8080, Tags: []string{"v2"}, Health: HealthWarning},
		Instance{Node: "node3", NodeAddress: "10.0.0.3", Port: 8080, Tags: []string{"v1"}, Health: HealthCritical},
	)
	c.addService("api", Instance{Node: "node1", NodeAddress: "10.0.0.1", ServiceAddress: "192.168.1.10", Port: 9000,
		Health: HealthPassing, Weights: Weights{Passing: 10, Warning: 2}})
	c.addService("v6", Instance{Node: "node6", NodeAddress: "2001:db8::6", Port: 80, Health: HealthPassing})
	c.addService("ext", Instance{Node: "node2", NodeAddress: "10.0.0.2", ServiceAddress: "example.org", Port: 443, Health: HealthPassing})
	c.addService("down", Instance{Node: "node1", NodeAddress: "10.0.0.1", Port: 1, Health: HealthCritical})
	c.addService("warnonly", Instance{Node: "node2", NodeAddress: "10.0.0.2", Port: 2, Health: HealthWarning,
		Weights: Weights{Passing: 5, Warning: 0}})
	c.addService(ServerServiceName, Instance{Node: "server1", NodeAddress: "10.0.0.100", Port: 8300, Health: HealthPassing})
	return c
}

// startServer starts a server on a free loopback port and stops it with the test.
func startServer(t testing.TB, cat Catalog, edit func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, cat, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// query sends one question to addr over network (udp or tcp); edns > 0 adds an OPT
// record with that buffer size.
func query(t testing.TB, network, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: dns.MaxMsgSize}
	r, _, err := c.Exchange(m, addr)
	if err != nil && !(r != nil && r.Truncated) {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

// rawExchange sends m over UDP and returns the size of the response datagram and the
// response.
func rawExchange(t testing.TB, addr string, m *dns.Msg) (int, *dns.Msg) {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatalf("unpacking a %d-byte response: %v", n, err)
	}
	return n, r
}

// rrStrings renders records without name and TTL, sorted: "A 10.0.0.1",
// "SRV 1 1 8080 node1.node.dc1.wolke.".
func rrStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		// name TTL class type rdata...
		out = append(out, strings.Join(append([]string{f[3]}, f[4:]...), " "))
	}
	sort.Strings(out)
	return out
}

// namedStrings renders records with their names: "node1.node.dc1.wolke. A 10.0.0.1".
func namedStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append([]string{f[0], f[3]}, f[4:]...), " "))
	}
	sort.Strings(out)
	return out
}

// recorder is a dns.ResponseWriter that keeps the message written.
type recorder struct {
	remote net.Addr
	msg    *dns.Msg
	packed []byte
}

var _ dns.ResponseWriter = (*recorder)(nil)

func (r *recorder) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8600}
}

func (r *recorder) RemoteAddr() net.Addr {
	if r.remote != nil {
		return r.remote
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.msg = m
	b, err := m.Pack()
	r.packed = b
	return err
}
func (r *recorder) Write(b []byte) (int, error) { return 0, errors.New("recorder: raw write") }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

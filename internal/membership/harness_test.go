package membership

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// fastMemberlist is memberlist timing for in-process tests: the same algorithm as
// DefaultLANConfig, about ten times faster, so that a crash is detected in about a
// second instead of several. It keeps LAN's RetransmitMult (Local's 2 lets a pool of
// three spend both transmissions of a broadcast on a member that just died, since
// memberlist still gossips to the dead for GossipToTheDeadTime: a leave right after a
// crash then never reached the survivor) and LAN's indirect probes.
func fastMemberlist() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.RetransmitMult = memberlist.DefaultLANConfig().RetransmitMult
	c.IndirectChecks = memberlist.DefaultLANConfig().IndirectChecks
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = time.Second
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 3
	c.GossipToTheDeadTime = time.Second
	c.Label = testLabel
	return c
}

// testLabel marks this test process's gossip: memberlist drops packets and streams
// with another label, so a pool never hears from another process's test pools that
// used the same names on a port the OS has since handed out again.
var testLabel = fmt.Sprintf("wolke-test-%d-%d", os.Getpid(), time.Now().UnixNano())

// logBuffer collects a test's logs; they are printed only if the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogs returns a logger for a test's pools and the buffer it writes to.
func testLogs(t testing.TB) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := &logBuffer{}
	t.Cleanup(func() { // registered first, so it runs after the pools shut down
		if t.Failed() {
			t.Logf("logs:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// testConfig is a pool on 127.0.0.1 with an OS-assigned port and fast timing.
func testConfig(name string, logger *slog.Logger) Config {
	c := DefaultConfig()
	c.NodeName = name
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Memberlist = fastMemberlist()
	c.RetryInterval = 100 * time.Millisecond
	c.LeavePropagateDelay = 200 * time.Millisecond
	c.Logger = logger.With("pool", name)
	return c
}

// startPool starts a pool and shuts it down when the test ends.
func startPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// gossipAddr is the pool's "ip:port" to join.
func gossipAddr(p *Pool) string {
	m := p.LocalMember()
	return net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
}

// waitFor polls cond until it returns nil, failing the test with its last error after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memberStatus is the status p sees for name (StatusNone if unknown).
func memberStatus(p *Pool, name string) (Member, Status) {
	for _, m := range p.Members() {
		if m.Name == name {
			return m, m.Status
		}
	}
	return Member{}, StatusNone
}

// seesStatus is a waitFor condition: every pool sees name with status want.
func seesStatus(want Status, name string, pools ...*Pool) func() error {
	return func() error {
		for _, p := range pools {
			if _, got := memberStatus(p, name); got != want {
				return fmt.Errorf("%s sees %s as %v, want %v", p.cfg.NodeName, name, got, want)
			}
		}
		return nil
	}
}

// allAlive is a waitFor condition: every pool sees exactly n alive members.
func allAlive(n int, pools ...*Pool) func() error {
	return func() error {
		for _, p := range pools {
			if got := p.NumAlive(); got != n {
				return fmt.Errorf("%s sees %d alive members, want %d: %v", p.cfg.NodeName, got, n, p.Members())
			}
		}
		return nil
	}
}

// freePort returns a port on 127.0.0.1 free for both TCP and UDP just now.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// nextEvent reads events until one matches typ and name (the member's, or the user
// event's; "" matches any), or fails after timeout.
func nextEvent(t testing.TB, ch <-chan Event, typ EventType, name string, timeout time.Duration) Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("events closed while waiting for %v %s; saw %v", typ, name, seen)
			}
			if e.Type == typ && (name == "" || typ == EventUser && e.User.Name == name || e.Member.Name == name) {
				return e
			}
			seen = append(seen, e.Type.String()+":"+e.Member.Name+e.User.Name)
		case <-timer.C:
			t.Fatalf("no %v event for %s within %v; saw %v", typ, name, timeout, seen)
		}
	}
}

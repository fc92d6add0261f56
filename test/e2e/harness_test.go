// Package e2e runs the built wolke binary as real processes on loopback and checks what
// survives SIGKILL and restarts, with Consul's own client.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

var (
	wolkeBin string
	tmpDir   string // removed after the tests: for helper binaries
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wolke-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	wolkeBin = filepath.Join(dir, "wolke")
	if bin := os.Getenv("WOLKE_BIN"); bin != "" {
		wolkeBin = bin // a binary built elsewhere, e.g. from another commit
	} else {
		build := exec.Command("go", "build", "-o", wolkeBin, "../../cmd/wolke")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build wolke:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port, free for TCP and UDP when asked, that no earlier
// call in this process returned. Agents get their ports as flags and keep them across
// restarts, so there is a gap between this check and their bind; a port from the
// kernel's ephemeral range (what listening on ":0" hands out) can be taken in that gap
// as the source port of any process's outgoing connection, which failed a CI run
// ("bind: address already in use" for a gateway's port while other packages' tests
// ran alongside). So ports come from below that range, where the kernel assigns none
// by itself.
func freePort(t testing.TB) int {
	t.Helper()
	lo := ephemeralLow()
	const base = 10000
	if lo <= base+1000 {
		return kernelPort(t)
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := base + rand.IntN(lo-base)
		if portsUsed[p] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr) // gossip uses both on one port
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// ephemeralLow is the lowest port the kernel hands out by itself.
var ephemeralLow = sync.OnceValue(func() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				return v
			}
		}
	}
	return 32768
})

// kernelPort asks the kernel for a free port, on machines whose ephemeral range
// leaves no room below it.
func kernelPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one agent process.
type proc struct {
	t        testing.TB
	args     []string
	httpAddr string
	cmd      *exec.Cmd
	logs     *syncBuffer
	logFile  io.Writer // if set, the output of every run is appended here too
	done     chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs a durable single server in dataDir on fresh ports.
func startServer(t testing.TB, dataDir string, extra ...string) *proc {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"agent", "-server", "-bootstrap", "-data-dir", dataDir,
		"-bind", "127.0.0.1", "-server-port", fmt.Sprint(freePort(t)), "-serf-port", fmt.Sprint(freePort(t)), "-dns-addr=",
		"-http-addr", httpAddr,
		"-log-level", "warn"}, extra...)
	p := &proc{t: t, args: args, httpAddr: httpAddr}
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.launch()
	p.waitReady()
}

// launch starts the process without waiting for it to accept writes.
func (p *proc) launch() {
	p.t.Helper()
	p.logs = &syncBuffer{}
	p.cmd = exec.Command(wolkeBin, p.args...)
	var out io.Writer = p.logs
	if p.logFile != nil {
		out = io.MultiWriter(p.logs, p.logFile)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	p.t.Cleanup(p.kill)
}

// waitReady polls until the agent accepts a write (it has a leader).
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("PUT", "http://"+p.httpAddr+"/v1/kv/_ready", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "true" {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("agent exited during start-up: %s", p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("agent not ready after 15s: %s", p.logs.String())
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
		return fmt.Errorf("agent did not exit within 15s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("agent exited with %d: %s", code, p.logs.String())
	}
	return nil
}

func (p *proc) client() *api.Client {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = p.httpAddr
	c, err := api.NewClient(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

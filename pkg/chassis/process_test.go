package chassis

// Multi-process tests: examples/hello, built once, started as real processes against
// an in-process agent, stopped with real signals.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	// The test binary doubles as a service that requires a variable, for the exit-code
	// test of Main.
	if os.Getenv("CHASSIS_TEST_CHILD") == "required" {
		var cfg struct {
			DB string `env:"DATABASE_URL" required:"true"`
		}
		Main(Service{Name: "child", Config: &cfg, Args: []string{}})
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// helloBinary builds examples/hello once per test binary and returns its path.
func helloBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "chassis-test-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "hello"), "../../examples/hello").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building examples/hello: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "hello")
}

// proc is a running hello process.
type proc struct {
	cmd       *exec.Cmd
	out       *logBuffer
	stderr    bytes.Buffer
	id        string
	addr      string
	exited    chan struct{}
	exitCode  int
	startedAt time.Time
}

// startHello starts hello with the agent at agentAddr and waits for its "ready" line.
// The process is killed (by PID) when the test ends if it still runs.
func startHello(t testing.TB, agentAddr string, env ...string) *proc {
	t.Helper()
	p := &proc{out: &logBuffer{}, exited: make(chan struct{}), startedAt: time.Now()}
	p.cmd = exec.Command(helloBinary(t))
	p.cmd.Env = append([]string{
		"WOLKE_HTTP_ADDR=" + agentAddr, "BIND_ADDR=127.0.0.1", "PORT=0", "ADMIN_PORT=0",
		"DEREGISTER_WAIT=200ms", "ACCESS_LOG=false",
	}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	waitFor(t, 10*time.Second, "hello ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("hello exited with %d before ready:\n%s%s", p.exitCode, p.out.buf.String(), p.stderr.String())
		default:
		}
		if r := p.out.find(t, "ready"); r != nil {
			p.id, p.addr = r["instance"].(string), r["addr"].(string)
			return true
		}
		return false
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(timeout):
		t.Fatalf("process %s did not exit within %v", p.id, timeout)
		return -1
	}
}

// loadGen calls a service through a client from several goroutines until stopped,
// 1 in 5 requests a POST, and counts what it sees.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	servedBy   map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(c *http.Client, url string, workers int, withPosts bool) *loadGen {
	l := &loadGen{stop: make(chan struct{}), servedBy: map[string]int{}}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", url, nil)
				if withPosts && i%5 == w%5 {
					req, _ = http.NewRequest("POST", url, strings.NewReader(`{"n":1}`))
				}
				resp, err := c.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, req.Method+": "+err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				// "hello from hello-<host>-<port>"
				if f := strings.Fields(string(body)); len(f) == 3 {
					l.mu.Lock()
					l.servedBy[f[2]]++
					l.mu.Unlock()
				}
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	return l
}

func (l *loadGen) finish(t testing.TB) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d ok, %d failed, served by %v", l.ok.Load(), l.failed.Load(), l.servedBy)
	if l.failed.Load() != 0 {
		t.Errorf("%d failed requests, e.g. %v", l.failed.Load(), l.errs)
	}
}

// waitListed waits until the caller's client sees exactly the given instances.
func waitListed(t testing.TB, caller *running, service string, ids ...string) {
	t.Helper()
	want := strings.Join(ids, ",")
	waitFor(t, 5*time.Second, service+" instances "+want, func() bool {
		list, err := caller.clientCore().watch.Service(context.Background(), service)
		if err != nil {
			return false
		}
		var got []string
		for _, in := range list {
			got = append(got, in.ID)
		}
		have := map[string]bool{}
		for _, id := range got {
			have[id] = true
		}
		if len(got) != len(ids) {
			return false
		}
		for _, id := range ids {
			if !have[id] {
				return false
			}
		}
		return true
	})
}

func TestProcessRegistersAndDeregistersBeforeClosing(t *testing.T) {
	agent := startAgent(t)
	c := consulClient(t, agent)
	p := startHello(t, agent, "DEREGISTER_WAIT=500ms")
	if took := p.out.find(t, "ready")["startup_ms"].(float64); took >= 1000 {
		t.Fatalf("startup took %vms", took)
	}
	if ok, status := listed(t, c, "hello", p.id); !ok || status != api.HealthPassing {
		t.Fatalf("catalog: listed %v, %q", ok, status)
	}
	// Another service's client finds it.
	caller := startInstance(t, agent, Service{Name: "caller"})
	if code, body := bodyOf(t)(caller.Client().Get("http://hello/")); code != 200 || body != "hello from "+p.id+"\n" {
		t.Fatalf("through the client: %d %q", code, body)
	}

	// SIGTERM: the instance leaves the catalog while it still accepts requests.
	_, meta, err := c.Health().Service("hello", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	idx := meta.LastIndex
	for {
		entries, m, err := c.Health().Service("hello", "", false, &api.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			break
		}
		if m.LastIndex == idx {
			t.Fatal("still registered 5s after SIGTERM")
		}
		idx = m.LastIndex
	}
	direct := &http.Client{Timeout: 2 * time.Second}
	if code, body := get(t, direct, "http://"+p.addr+"/"); code != 200 || !strings.HasPrefix(body, "hello from") {
		t.Fatalf("right after deregistration: %d %q", code, body)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.stderr.String())
	}
	if _, err := direct.Get("http://" + p.addr + "/"); err == nil {
		t.Fatal("accepting after exit")
	}
	var order []string
	for _, r := range p.out.records(t) {
		switch r["msg"] {
		case "shutting down", "deregistered", "drained", "stopped":
			order = append(order, r["msg"].(string))
		}
	}
	if strings.Join(order, ",") != "shutting down,deregistered,drained,stopped" {
		t.Fatalf("shutdown steps logged as %v", order)
	}
}

// TestRollingRestartZeroErrors restarts 3 instances one at a time (SIGTERM, wait for
// exit 0, start a replacement, wait until clients see it) under GET and POST load
// through the client: no request fails, and none needs a retry either.
func TestRollingRestartZeroErrors(t *testing.T) {
	agent := startAgent(t)
	// DEREGISTER_WAIT is the propagation bound; clients see the change in
	// milliseconds, 500ms leaves room for a loaded test machine.
	var procs []*proc
	for i := 0; i < 3; i++ {
		procs = append(procs, startHello(t, agent, "DEREGISTER_WAIT=500ms"))
	}
	caller := startInstance(t, agent, Service{Name: "loadgen"})
	waitListed(t, caller, "hello", procs[0].id, procs[1].id, procs[2].id)
	load := startLoad(caller.Client(), "http://hello/", 4, true)
	waitFor(t, 5*time.Second, "load running", func() bool { return load.ok.Load() > 100 })
	for i := range procs {
		old := procs[i]
		if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := old.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		procs[i] = startHello(t, agent, "DEREGISTER_WAIT=500ms")
		waitListed(t, caller, "hello", procs[0].id, procs[1].id, procs[2].id)
		before := load.ok.Load()
		waitFor(t, 5*time.Second, "more load", func() bool { return load.ok.Load() > before+50 })
	}
	load.finish(t)
	if got := metricValue(t, caller.reg, "chassis_client_retries_total", map[string]string{"service": "hello"}); got != 0 {
		t.Errorf("%v retries during the rolling restart: some instance failed a request", got)
	}
	for _, p := range procs {
		if load.servedBy[p.id] == 0 {
			t.Errorf("new instance %s got no traffic", p.id)
		}
	}
}

// TestInstanceKilledUnderLoad: SIGKILL one of 3 instances while GETs flow through the
// client: the requests that hit it are retried on the others, and none fails.
func TestInstanceKilledUnderLoad(t *testing.T) {
	agent := startAgent(t)
	var procs []*proc
	for i := 0; i < 3; i++ {
		procs = append(procs, startHello(t, agent))
	}
	caller := startInstance(t, agent, Service{Name: "loadgen"})
	waitListed(t, caller, "hello", procs[0].id, procs[1].id, procs[2].id)
	load := startLoad(caller.Client(), "http://hello/", 4, false)
	waitFor(t, 5*time.Second, "load running", func() bool { return load.ok.Load() > 100 })
	if err := procs[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	procs[0].wait(t, 5*time.Second)
	// Until the agent's check marks it critical (within about a second), the dead
	// instance is still listed; the client retries and ejects it meanwhile.
	waitListed(t, caller, "hello", procs[1].id, procs[2].id)
	before := load.ok.Load()
	waitFor(t, 5*time.Second, "more load", func() bool { return load.ok.Load() > before+100 })
	load.finish(t)
	if got := metricValue(t, caller.reg, "chassis_client_retries_total", map[string]string{"service": "hello"}); got == 0 {
		t.Error("no retries: the killed instance got no request, the test proves nothing")
	}
}

func TestBadEnvironmentExitsWith2(t *testing.T) {
	hello := helloBinary(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmd  *exec.Cmd
		code int
		msg  string
	}{
		{"unparsable port", exec.Command(hello), 2, `hello: bad environment: PORT="eighty": not a port number (0-65535)`},
		{"missing required", exec.Command(self), 2, "child: bad environment: DATABASE_URL: required but not set"},
		{"unknown command", exec.Command(hello, "frobnicate"), 2, "hello: unknown command \"frobnicate\" (run `hello help`)"},
		{"version", exec.Command(hello, "version"), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			tc.cmd.Env = []string{"PORT=eighty", "CHASSIS_TEST_CHILD=required"}
			if tc.name != "unparsable port" {
				tc.cmd.Env = []string{"CHASSIS_TEST_CHILD=required"}
			}
			tc.cmd.Stderr = &stderr
			err := tc.cmd.Run()
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || strings.TrimSuffix(stderr.String(), "\n") != tc.msg {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tc.code, tc.msg)
			}
		})
	}
}

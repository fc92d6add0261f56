package chassis

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records decodes the JSON lines written so far.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := b.buf.String()
	b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// find returns the first record with msg, or nil.
func (b *logBuffer) find(t testing.TB, msg string) map[string]any {
	t.Helper()
	for _, r := range b.records(t) {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// testEnv is the environment of an in-process instance: loopback ports picked by
// the OS, a fast shutdown, and the agent at agentAddr.
func testEnv(agentAddr string, extra ...string) func(string) (string, bool) {
	m := map[string]string{
		"BIND_ADDR":       "127.0.0.1",
		"WOLKE_HTTP_ADDR": agentAddr,
		"DEREGISTER_WAIT": "50ms",
		"DRAIN_TIMEOUT":   "5s",
		"START_TIMEOUT":   "5s",
		"ACCESS_LOG":      "false",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return envOf(m)
}

// newInstance builds an instance without starting it; its log goes to the returned
// buffer. No agent is contacted.
func newInstance(t testing.TB, s Service, env ...string) (*Instance, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if s.Name == "" {
		s.Name = "test"
	}
	s.LookupEnv = testEnv("127.0.0.1:1", env...)
	s.Stdout = logs
	in, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return in, logs
}

// startAgent starts an in-process dev agent and returns its HTTP address.
func startAgent(t testing.TB) string {
	t.Helper()
	return agenttest.StartDev(t).HTTPAddr()
}

// running is an instance served by Run in the background.
type running struct {
	*Instance
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned, with its error in err
	err    error
}

// wait waits up to timeout for Run to return and returns its error.
func (r *running) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %v", timeout)
		return nil
	}
}

// stop cancels the instance's context and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	if err := r.wait(t, 15*time.Second); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// startInstance runs s against the agent at agentAddr and returns once it logged
// "ready"; it is stopped when the test ends.
func startInstance(t testing.TB, agentAddr string, s Service, env ...string) *running {
	t.Helper()
	logs := &logBuffer{}
	s.LookupEnv = testEnv(agentAddr, env...)
	s.Stdout = logs
	in, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Instance: in, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = in.Run(ctx)
		close(r.done)
	}()
	waitFor(t, 5*time.Second, "instance ready", func() bool {
		select {
		case <-r.done:
			t.Fatalf("Run returned early: %v\n%s", r.err, logs.buf.String())
		default:
		}
		return logs.find(t, "ready") != nil
	})
	t.Cleanup(func() { r.stop(t) })
	return r
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the counter, gauge or histogram count of name
// with the given labels in reg.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	panic(fmt.Sprintf("unexpected metric %v", m))
}

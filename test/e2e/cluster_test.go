package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// This file extends the single-process harness to clusters: N servers plus client agents
// on fixed per-node loopback ports (a node restarts on the same name, data dir and ports,
// as serf and Raft require), fault injection by PID (SIGKILL, SIGSTOP, SIGCONT), leader
// discovery from outside, a monitor for "at most one leader per term", and a unique-key
// write load whose acknowledged writes are checked on every server afterwards.

// requestTimeout bounds every KV request a test's clients send: shorter than the agents'
// 7 s wait for a leader, so a client sees an election as a timeout, not a long hang.
const requestTimeout = 3 * time.Second

// leaderWait is the agents' own wait for a leader before "No cluster leader".
const leaderWait = 7 * time.Second

// testSeed returns the seed for a test's random choices, from WOLKE_SEED or the clock,
// and logs it so that a failing run's choices can be repeated.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WOLKE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WOLKE_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (repeat the random choices with WOLKE_SEED=%d)", seed, seed)
	return seed
}

// node is one agent of a cluster, with the ports it keeps across restarts.
type node struct {
	*proc
	name       string
	server     bool
	serverAddr string // host:port of Raft/RPC; what /v1/status/leader reports
	serfAddr   string
	dnsAddr    string      // the DNS interface, when clusterOpts.dns
	down       atomic.Bool // killed or stopped by the test: load generators avoid it
}

// cluster is a set of agent processes in one temp dir that is kept when the test fails.
type cluster struct {
	t       testing.TB
	dir     string
	servers []*node
	clients []*node
	kvHTTP  *http.Client // for KV traffic: requestTimeout
	probe   *http.Client // for status polling: short timeout
}

type clusterOpts struct {
	servers int      // 3 unless set
	clients int      // client agents
	extra   []string // extra flags for every agent
	dns     bool     // give every agent a DNS interface on its own port (node.dnsAddr)
}

// startCluster runs opts.servers servers with -bootstrap-expect and opts.clients client
// agents, all on loopback, and waits until every agent accepts a write. Every process is
// killed at cleanup; the data dirs and logs are deleted unless the test failed, in which
// case their path is printed. WOLKE_E2E_AGENT_FLAGS adds flags to every agent (e.g.
// "-log-level debug").
func startCluster(t testing.TB, opts clusterOpts) *cluster {
	t.Helper()
	if opts.servers == 0 {
		opts.servers = 3
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "wolke-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("artifacts (agent logs, data dirs, history) kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c := &cluster{
		t:      t,
		dir:    dir,
		kvHTTP: &http.Client{Transport: tr, Timeout: requestTimeout},
		probe:  &http.Client{Transport: tr, Timeout: time.Second},
	}
	t.Cleanup(tr.CloseIdleConnections)
	// Every agent retry-joins all the others, so that any one of them can restart while
	// any other is down.
	type spec struct {
		name   string
		server bool
	}
	var specs []spec
	for i := 1; i <= opts.servers; i++ {
		specs = append(specs, spec{fmt.Sprintf("s%d", i), true})
	}
	for i := 1; i <= opts.clients; i++ {
		specs = append(specs, spec{fmt.Sprintf("c%d", i), false})
	}
	var nodes []*node
	for _, sp := range specs {
		n := &node{name: sp.name, server: sp.server, serfAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		if opts.dns {
			n.dnsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		if sp.server {
			n.serverAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := []string{"agent", "-node", n.name, "-data-dir", filepath.Join(dir, n.name), "-bind", "127.0.0.1",
			"-serf-port", strings.TrimPrefix(n.serfAddr, "127.0.0.1:"), "-http-addr", httpAddr, "-dns-addr=" + n.dnsAddr,
			"-retry-interval", "1s", "-log-level", "info"}
		if n.server {
			args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(opts.servers),
				"-server-port", strings.TrimPrefix(n.serverAddr, "127.0.0.1:"))
		}
		for _, o := range nodes {
			if o != n {
				args = append(args, "-retry-join", o.serfAddr)
			}
		}
		args = append(args, opts.extra...)
		args = append(args, strings.Fields(os.Getenv("WOLKE_E2E_AGENT_FLAGS"))...)
		f, err := os.OpenFile(filepath.Join(dir, n.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // runs after the process is killed
		n.proc = &proc{t: t, args: args, httpAddr: httpAddr, logFile: f}
		if n.server {
			c.servers = append(c.servers, n)
		} else {
			c.clients = append(c.clients, n)
		}
	}
	for _, n := range c.all() {
		n.launch()
	}
	for _, n := range c.all() {
		n.waitReady()
	}
	return c
}

func (c *cluster) all() []*node { return append(append([]*node{}, c.servers...), c.clients...) }

// up lists the agents that the test has not killed or stopped.
func (c *cluster) up() []*node {
	var up []*node
	for _, n := range c.all() {
		if !n.down.Load() {
			up = append(up, n)
		}
	}
	return up
}

func (c *cluster) byServerAddr(addr string) *node {
	for _, n := range c.servers {
		if n.serverAddr == addr {
			return n
		}
	}
	return nil
}

// api returns a Consul client for n whose requests time out after requestTimeout.
func (c *cluster) api(n *node) *api.Client {
	return c.apiWith(n, c.kvHTTP)
}

func (c *cluster) apiWith(n *node, hc *http.Client) *api.Client {
	cl, err := api.NewClient(&api.Config{Address: n.httpAddr, Scheme: "http", HttpClient: hc})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// kill sends SIGKILL and waits until the process is gone.
func (n *node) kill() {
	n.down.Store(true)
	n.proc.kill()
}

// restart starts a killed node again on the same name, data dir and ports, and waits
// until its HTTP API answers (not until it has a leader).
func (c *cluster) restart(n *node) {
	c.t.Helper()
	n.launch()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var self map[string]any
		if err := c.getJSON(n, "/v1/agent/self", &self); err == nil {
			break
		}
		select {
		case <-n.done:
			c.t.Fatalf("%s exited on restart: %s", n.name, n.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s's HTTP API not up 15s after restart: %s", n.name, n.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.down.Store(false)
}

// pause sends SIGSTOP; resume sends SIGCONT.
func (n *node) pause() {
	n.t.Helper()
	n.down.Store(true)
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) resume() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		n.t.Fatal(err)
	}
	n.down.Store(false)
}

// raftStats is the part of /v1/agent/self the tests read.
type raftStats struct {
	State   string
	Term    uint64
	Applied uint64
	Commit  uint64
}

func (c *cluster) raftStats(n *node) (raftStats, error) {
	var self struct {
		Stats map[string]map[string]string
	}
	if err := c.getJSON(n, "/v1/agent/self", &self); err != nil {
		return raftStats{}, err
	}
	r := self.Stats["raft"]
	if r == nil {
		return raftStats{}, errors.New("no raft stats")
	}
	term, _ := strconv.ParseUint(r["term"], 10, 64)
	applied, _ := strconv.ParseUint(r["applied_index"], 10, 64)
	commit, _ := strconv.ParseUint(r["commit_index"], 10, 64)
	return raftStats{State: r["state"], Term: term, Applied: applied, Commit: commit}, nil
}

// leaderAddr is what n's /v1/status/leader says ("" when it knows no leader).
func (c *cluster) leaderAddr(n *node) (string, error) {
	var addr string
	err := c.getJSON(n, "/v1/status/leader", &addr)
	return addr, err
}

func (c *cluster) getJSON(n *node, path string, v any) error {
	resp, err := c.probe.Get("http://" + n.httpAddr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// currentLeader returns the server that says it is leader when every server the test has
// not killed or stopped names it in /v1/status/leader, or nil.
func (c *cluster) currentLeader() *node {
	var leader *node
	var up []*node
	for _, n := range c.servers {
		if n.down.Load() {
			continue
		}
		up = append(up, n)
		st, err := c.raftStats(n)
		if err != nil {
			return nil
		}
		if st.State == "Leader" {
			if leader != nil {
				return nil // two say so (different terms): not settled yet
			}
			leader = n
		}
	}
	if leader == nil {
		return nil
	}
	for _, n := range up {
		addr, err := c.leaderAddr(n)
		if err != nil || addr != leader.serverAddr {
			return nil
		}
	}
	return leader
}

// waitLeader polls until the servers agree on a leader that satisfies ok (nil: any).
func (c *cluster) waitLeader(timeout time.Duration, ok func(*node) bool) *node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.currentLeader(); l != nil && (ok == nil || ok(l)) {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("servers did not agree on a leader within %v: %s", timeout, c.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// describe is each server's view, for failure messages.
func (c *cluster) describe() string {
	var b strings.Builder
	for _, n := range c.servers {
		st, err := c.raftStats(n)
		addr, _ := c.leaderAddr(n)
		fmt.Fprintf(&b, "\n  %s (%s, down=%v): %+v leader=%q err=%v", n.name, n.serverAddr, n.down.Load(), st, addr, err)
	}
	return b.String()
}

// waitCaughtUp polls until every server that is up has applied the leader's commit index
// as read at the start.
func (c *cluster) waitCaughtUp(timeout time.Duration) {
	c.t.Helper()
	leader := c.waitLeader(timeout, nil)
	st, err := c.raftStats(leader)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for _, n := range c.servers {
		if n.down.Load() {
			continue
		}
		for {
			s, err := c.raftStats(n)
			if err == nil && s.Applied >= st.Commit {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s did not apply index %d within %v: %s", n.name, st.Commit, timeout, c.describe())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// termMonitor polls every server's Raft state and term and records who led which term.
// A claim counts only when two consecutive polls of one server both say "Leader" in the
// same term: the state and term in one answer are read separately, so a single answer
// taken while a leader steps down can pair "Leader" with the next term.
type termMonitor struct {
	c       *cluster
	stopCh  chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	leaders map[uint64]map[string]bool // term -> confirmed leaders
	order   []string                   // "term/leader" in the order first confirmed
}

func (c *cluster) monitorTerms() *termMonitor {
	m := &termMonitor{c: c, stopCh: make(chan struct{}), leaders: map[uint64]map[string]bool{}}
	for _, n := range c.servers {
		m.wg.Add(1)
		go m.poll(n)
	}
	c.t.Cleanup(m.stop)
	return m
}

func (m *termMonitor) poll(n *node) {
	defer m.wg.Done()
	var prev raftStats
	for {
		select {
		case <-m.stopCh:
			return
		case <-time.After(15 * time.Millisecond):
		}
		st, err := m.c.raftStats(n)
		if err != nil {
			prev = raftStats{}
			continue
		}
		if st.State == "Leader" && prev.State == "Leader" && prev.Term == st.Term {
			m.mu.Lock()
			if m.leaders[st.Term] == nil {
				m.leaders[st.Term] = map[string]bool{}
			}
			if !m.leaders[st.Term][n.name] {
				m.leaders[st.Term][n.name] = true
				m.order = append(m.order, fmt.Sprintf("%d/%s", st.Term, n.name))
			}
			m.mu.Unlock()
		}
		prev = st
	}
}

func (m *termMonitor) stop() {
	select {
	case <-m.stopCh:
	default:
		close(m.stopCh)
	}
	m.wg.Wait()
}

// check stops the monitor, fails the test if any term had two leaders, and returns the
// sequence of (term, leader) pairs seen.
func (m *termMonitor) check(t testing.TB) []string {
	t.Helper()
	m.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for term, ls := range m.leaders {
		if len(ls) > 1 {
			t.Errorf("split brain: term %d had leaders %v (sequence %v)", term, keys(ls), m.order)
		}
	}
	return append([]string(nil), m.order...)
}

// distinctLeaders counts the different servers seen as leader.
func distinctLeaders(order []string) int {
	seen := map[string]bool{}
	for _, o := range order {
		seen[o[strings.Index(o, "/")+1:]] = true
	}
	return len(seen)
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// writeLoad runs writers that put unique keys with unique values through random agents
// that are up, and remembers which writes were acknowledged.
type writeLoad struct {
	c      *cluster
	prefix string
	stopCh chan struct{}
	wg     sync.WaitGroup
	acks   atomic.Int64

	mu     sync.Mutex
	acked  map[string]string
	writes []writeRecord
}

type writeRecord struct {
	start, end time.Time
	target     string
	err        error
}

// startWrites starts n writers; targets chooses the agents they may use (nil: any up).
func (c *cluster) startWrites(prefix string, n int, seed uint64, targets func() []*node) *writeLoad {
	if targets == nil {
		targets = c.up
	}
	w := &writeLoad{c: c, prefix: prefix, stopCh: make(chan struct{}), acked: map[string]string{}}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func(i int) {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for seq := 0; ; seq++ {
				select {
				case <-w.stopCh:
					return
				default:
				}
				ts := targets()
				if len(ts) == 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				target := ts[rng.IntN(len(ts))]
				key := fmt.Sprintf("%s/w%d/%d", prefix, i, seq)
				val := fmt.Sprintf("v%d-%d-%d", seed%1000, i, seq)
				start := time.Now()
				_, err := c.api(target).KV().Put(&api.KVPair{Key: key, Value: []byte(val)}, nil)
				rec := writeRecord{start: start, end: time.Now(), target: target.name, err: err}
				w.mu.Lock()
				w.writes = append(w.writes, rec)
				if err == nil {
					w.acked[key] = val
				}
				w.mu.Unlock()
				if err == nil {
					w.acks.Add(1)
				} else {
					time.Sleep(10 * time.Millisecond) // a dead target refuses at once
				}
			}
		}(i)
	}
	c.t.Cleanup(w.stop)
	return w
}

func (w *writeLoad) stop() {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	w.wg.Wait()
}

// waitAcks polls until n more writes than at the call were acknowledged.
func (w *writeLoad) waitAcks(n int64, timeout time.Duration) {
	w.c.t.Helper()
	want := w.acks.Load() + n
	deadline := time.Now().Add(timeout)
	for w.acks.Load() < want {
		if time.Now().After(deadline) {
			w.c.t.Fatalf("only %d of %d acknowledged writes after %v: %s", w.acks.Load(), want, timeout, w.c.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstAckAfter is when the first write sent after t was acknowledged.
func (w *writeLoad) firstAckAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, r := range w.writes {
		if r.err == nil && r.start.After(t) && (first.IsZero() || r.end.Before(first)) {
			first = r.end
		}
	}
	return first
}

// longestGap is the longest time with no acknowledged write, between the first and the
// last acknowledgement.
func (w *writeLoad) longestGap() (time.Duration, time.Time) {
	w.mu.Lock()
	var ends []time.Time
	for _, r := range w.writes {
		if r.err == nil {
			ends = append(ends, r.end)
		}
	}
	w.mu.Unlock()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(ends); i++ {
		if d := ends[i].Sub(ends[i-1]); d > gap {
			gap, at = d, ends[i-1]
		}
	}
	return gap, at
}

func (w *writeLoad) failures() []writeRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	var fs []writeRecord
	for _, r := range w.writes {
		if r.err != nil {
			fs = append(fs, r)
		}
	}
	return fs
}

func (w *writeLoad) ackedCopy() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		m[k] = v
	}
	return m
}

// checkAcked polls every server that is up (with ?stale reads of its own state) until
// each holds every acknowledged write, and fails with what is missing otherwise.
func (c *cluster) checkAcked(acked map[string]string, prefix string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range c.servers {
		if n.down.Load() {
			continue
		}
		for {
			missing, example := c.missing(n, acked, prefix)
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s lacks %d of %d acknowledged writes after %v, e.g. %s: %s",
					n.name, missing, len(acked), timeout, example, c.describe())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (c *cluster) missing(n *node, acked map[string]string, prefix string) (int, string) {
	pairs, _, err := c.apiWith(n, c.probeKV()).KV().List(prefix, &api.QueryOptions{AllowStale: true})
	if err != nil {
		return len(acked), "(list failed: " + err.Error() + ")"
	}
	got := make(map[string]string, len(pairs))
	for _, p := range pairs {
		got[p.Key] = string(p.Value)
	}
	missing, example := 0, ""
	for k, v := range acked {
		if got[k] != v {
			missing++
			if example == "" {
				example = fmt.Sprintf("%s=%s (got %q)", k, v, got[k])
			}
		}
	}
	return missing, example
}

// probeKV is a client for large reads: longer than requestTimeout.
func (c *cluster) probeKV() *http.Client {
	return &http.Client{Transport: c.kvHTTP.Transport, Timeout: 10 * time.Second}
}

// isRefused says whether a request failed because nothing listened: it never reached an
// agent, so it certainly did not happen.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || (err != nil && strings.Contains(err.Error(), "connection refused"))
}

// withTimeout is a context for one request.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// probeRead is the outcome of one raw KV read.
type probeRead struct {
	status int
	value  string
	err    error
	took   time.Duration
}

// probeRead GETs key from n in mode ("consistent", "stale" or "default") and closes sent
// once the request is written to the socket, which a stopped process accepts.
func (c *cluster) probeRead(n *node, key, mode string, sent chan struct{}) probeRead {
	q := "?raw"
	if mode != "default" {
		q += "&" + mode
	}
	ctx, cancel := withTimeout(leaderWait + 5*time.Second)
	defer cancel()
	var once sync.Once
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(sent) }) }})
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.httpAddr+"/v1/kv/"+key+q, nil)
	if err != nil {
		return probeRead{err: err}
	}
	start := time.Now()
	// A fresh connection: an idle pooled one might be half-closed.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return probeRead{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return probeRead{status: resp.StatusCode, value: string(body), err: err, took: time.Since(start)}
}

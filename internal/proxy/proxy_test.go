package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/consul/api"
	"golang.org/x/net/http2"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

// env is one dev agent with a gateway following it.
type env struct {
	t      *testing.T
	api    *api.Client
	proxy  *Proxy
	base   string // http://gateway
	client *http.Client
}

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	a := agenttest.StartDev(t)
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.APIAddr, cfg.AccessLog = "127.0.0.1:0", "127.0.0.1:0", a.HTTPAddr(), nil
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	acfg := api.DefaultConfig()
	acfg.Address = a.HTTPAddr()
	c, err := api.NewClient(acfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, api: c, proxy: p, base: "http://" + p.Addr(), client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// backend is a test instance that names itself in every answer.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	fail atomic.Int64 // answer this status (0: 200)
	host string
	port int
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if code := b.fail.Load(); code != 0 {
			w.WriteHeader(int(code))
			return
		}
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s", name, r.URL.RequestURI())
	}))
	t.Cleanup(b.srv.Close)
	host, port, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	b.host = host
	b.port, _ = strconv.Atoi(port)
	return b
}

func (e *env) register(svc string, b *backend, tags ...string) {
	e.t.Helper()
	e.registerWeighted(svc, b, 1, tags...)
}

func (e *env) registerWeighted(svc string, b *backend, weight int, tags ...string) {
	e.t.Helper()
	err := e.api.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: svc + "-" + b.name, Name: svc, Address: b.host, Port: b.port, Tags: tags,
		Weights: &api.AgentWeights{Passing: weight, Warning: 1},
		Check:   &api.AgentServiceCheck{CheckID: "check-" + svc + "-" + b.name, TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// waitInstances polls the live table until svc has n instances.
func (e *env) waitInstances(svc string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e.instances(svc) == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("service %s: want %d instances in the routing table, have %d", svc, n, e.instances(svc))
}

func (e *env) instances(svc string) int {
	for _, r := range e.proxy.Routes() {
		if r.Service == svc {
			return len(r.Instances)
		}
	}
	return -1
}

func (e *env) get(path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	return e.do(http.MethodGet, path, "", hdr...)
}

func (e *env) do(method, path, body string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRoutesFollowCatalog(t *testing.T) {
	e := newEnv(t)
	b1, b2 := newBackend(t, "b1", nil), newBackend(t, "b2", nil)
	e.register("cart", b1)
	e.waitInstances("cart", 1)

	resp, body := e.get("/cart/items?x=1")
	if resp.StatusCode != 200 || body != "b1 /items?x=1" {
		t.Fatalf("GET /cart/items: %d %q", resp.StatusCode, body)
	}
	if _, body := e.get("/cart"); body != "b1 /" {
		t.Errorf("GET /cart gave %q, want the root", body)
	}
	if _, body := e.get("/x", "Host", "cart.wolke:8080"); body != "b1 /x" {
		t.Errorf("by Host: %q", body)
	}
	resp, body = e.get("/nothing/here")
	if resp.StatusCode != 404 || !strings.Contains(body, `"error"`) || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("unknown route: %d %q", resp.StatusCode, body)
	}

	// Register, fail a check, deregister: measure how fast the table follows.
	var lat []time.Duration
	for i := 0; i < 10; i++ {
		t0 := time.Now()
		e.register("cart", b2)
		e.waitInstances("cart", 2)
		lat = append(lat, time.Since(t0))
		t0 = time.Now()
		if err := e.api.Agent().UpdateTTL("check-cart-b2", "down", api.HealthCritical); err != nil {
			t.Fatal(err)
		}
		e.waitInstances("cart", 1)
		lat = append(lat, time.Since(t0))
		if err := e.api.Agent().UpdateTTL("check-cart-b2", "up", api.HealthPassing); err != nil {
			t.Fatal(err)
		}
		e.waitInstances("cart", 2)
		t0 = time.Now()
		if err := e.api.Agent().ServiceDeregister("cart-b2"); err != nil {
			t.Fatal(err)
		}
		e.waitInstances("cart", 1)
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("catalog change to routing table: p50 %v p99 %v over %d changes", p50, p99, len(lat))
	if p99 > 500*time.Millisecond {
		t.Errorf("routing table p99 %v, want well under 100 ms on an idle machine", p99)
	}
	for i := 0; i < 20; i++ {
		if _, body := e.get("/cart/"); body != "b1 /" {
			t.Fatalf("after b2 left: %q", body)
		}
	}

	// All instances gone: the route stays with its last policy and answers 503.
	if err := e.api.Agent().ServiceDeregister("cart-b1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := e.get("/cart/")
		if resp.StatusCode == 503 || resp.StatusCode == 404 {
			if !strings.Contains(body, "error") {
				t.Errorf("no instance: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still routed after deregistration: %d %q", resp.StatusCode, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTagRouting(t *testing.T) {
	e := newEnv(t)
	front, cart, off := newBackend(t, "front", nil), newBackend(t, "cart", nil), newBackend(t, "off", nil)
	e.register("storefront", front, "wolke.http.path=/", "wolke.http.priority=-1")
	e.register("cart", cart, "wolke.http.path=/api/cart", "wolke.http.strip-prefix=false")
	e.register("hidden", off, "wolke.http.enable=false")
	e.waitInstances("storefront", 1)
	e.waitInstances("cart", 1)
	for _, tc := range []struct{ path, want string }{
		{"/", "front /"},
		{"/articles/12", "front /articles/12"},
		{"/api/cart/7", "cart /api/cart/7"},
		{"/api/cartoon", "front /api/cartoon"},
		{"/hidden/x", "front /hidden/x"},
	} {
		if _, body := e.get(tc.path); body != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.path, body, tc.want)
		}
	}
	if e.instances("hidden") != -1 {
		t.Errorf("a service with wolke.http.enable=false has a route")
	}
}

func TestForwardingHeaders(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seen http.Header
	var host string
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen, host = r.Header.Clone(), r.Host
		mu.Unlock()
	})
	e.register("echo", b)
	e.waitInstances("echo", 1)

	resp, _ := e.get("/echo/", "X-Forwarded-For", "203.0.113.9", "Connection", "keep-alive, X-Secret", "Keep-Alive", "timeout=5")
	mu.Lock()
	h := seen.Clone()
	mu.Unlock()
	if got := h.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "http" || !strings.HasPrefix(h.Get("X-Forwarded-Host"), "127.0.0.1:") || host != h.Get("X-Forwarded-Host") {
		t.Errorf("X-Forwarded-Proto %q Host %q (backend saw Host %q)", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"), host)
	}
	if fw := h.Get("Forwarded"); !strings.HasPrefix(fw, "for=127.0.0.1;host=\"127.0.0.1:") || !strings.HasSuffix(fw, ";proto=http") {
		t.Errorf("Forwarded %q", fw)
	}
	if h.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop Keep-Alive forwarded")
	}
	id := h.Get("X-Request-ID")
	if len(id) != 32 || resp.Header.Get("X-Request-ID") != id {
		t.Errorf("request ID %q upstream, %q to the client", id, resp.Header.Get("X-Request-ID"))
	}
	tp := h.Get("traceparent")
	if !validTraceparent([]byte(tp)) {
		t.Errorf("traceparent %q", tp)
	}

	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	e.get("/echo/", "X-Request-ID", "my-id-1", "traceparent", parent)
	mu.Lock()
	h = seen.Clone()
	mu.Unlock()
	if h.Get("X-Request-ID") != "my-id-1" {
		t.Errorf("caller's request ID replaced: %q", h.Get("X-Request-ID"))
	}
	if tp := h.Get("traceparent"); !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || tp == parent {
		t.Errorf("traceparent %q, want the caller's trace with a new span", tp)
	}
}

func TestWeightsAndPolicies(t *testing.T) {
	e := newEnv(t)
	heavy, light := newBackend(t, "heavy", nil), newBackend(t, "light", nil)
	e.registerWeighted("w", heavy, 3, "wolke.lb=round-robin")
	e.registerWeighted("w", light, 1, "wolke.lb=round-robin")
	e.waitInstances("w", 2)
	for i := 0; i < 400; i++ {
		e.get("/w/")
	}
	if h, l := heavy.hits.Load(), light.hits.Load(); h != 300 || l != 100 {
		t.Errorf("weighted round-robin 3:1 gave %d:%d", h, l)
	}

	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	for _, be := range []*backend{a, b, c} {
		e.register("sticky", be, "wolke.lb=hash", "wolke.lb.hash-header=X-User")
	}
	e.waitInstances("sticky", 3)
	owners := map[string]string{}
	for round := 0; round < 3; round++ {
		for u := 0; u < 30; u++ {
			user := "user-" + strconv.Itoa(u)
			resp, _ := e.get("/sticky/", "X-User", user)
			got := resp.Header.Get("X-Backend")
			if prev, ok := owners[user]; ok && prev != got {
				t.Fatalf("%s moved from %s to %s", user, prev, got)
			}
			owners[user] = got
		}
	}
	spread := map[string]int{}
	for _, o := range owners {
		spread[o]++
	}
	if len(spread) != 3 {
		t.Errorf("30 users over 3 instances: %v", spread)
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	e := newEnv(t)
	good, bad := newBackend(t, "good", nil), newBackend(t, "bad", nil)
	bad.fail.Store(500)
	tags := []string{"wolke.lb=round-robin", "wolke.outlier.failures=3", "wolke.outlier.base-ejection=300ms", "wolke.retry.attempts=1", "wolke.breaker.min-requests=1000"}
	e.register("o", good, tags...)
	e.register("o", bad, tags...)
	e.waitInstances("o", 2)
	for i := 0; i < 40; i++ {
		e.get("/o/")
	}
	if n := bad.hits.Load(); n != 3 {
		t.Errorf("bad instance got %d requests, want exactly 3 before its ejection", n)
	}
	var ejected bool
	for _, r := range e.proxy.Routes() {
		for _, in := range r.Instances {
			if in.ID == "o-bad" && in.Ejected && in.Ejections == 1 {
				ejected = true
			}
		}
	}
	if !ejected {
		t.Errorf("routes do not show o-bad ejected: %+v", e.proxy.Routes())
	}
	// It returns after the ejection time and, healthy now, stays.
	bad.fail.Store(0)
	deadline := time.Now().Add(5 * time.Second)
	for bad.hits.Load() == 3 {
		if time.Now().After(deadline) {
			t.Fatal("ejected instance never came back")
		}
		e.get("/o/")
		time.Sleep(10 * time.Millisecond)
	}
	before := bad.hits.Load()
	for i := 0; i < 20; i++ {
		e.get("/o/")
	}
	if got := bad.hits.Load() - before; got < 8 {
		t.Errorf("returned instance got %d of 20 requests", got)
	}
}

func TestBreakerOpensAndCloses(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	b.fail.Store(500)
	e.register("br", b, "wolke.breaker.min-requests=10", "wolke.breaker.open-timeout=300ms", "wolke.outlier.failures=1000", "wolke.retry.attempts=1")
	e.waitInstances("br", 1)
	var opened bool
	for i := 0; i < 30 && !opened; i++ {
		resp, body := e.get("/br/")
		if resp.StatusCode == 503 && resp.Header.Get("X-Wolke-Rejected-By") == "breaker" {
			opened = true
			if resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "circuit breaker open") {
				t.Errorf("open breaker answer: Retry-After %q body %q", resp.Header.Get("Retry-After"), body)
			}
		}
	}
	if !opened {
		t.Fatal("breaker did not open")
	}
	hits := b.hits.Load()
	if resp, _ := e.get("/br/"); resp.StatusCode != 503 || b.hits.Load() != hits {
		t.Errorf("open breaker let a request through")
	}
	if !strings.Contains(e.metrics(), `wolke_proxy_breaker_state{service="br"} 1`) {
		t.Error("breaker state metric does not say open")
	}
	b.fail.Store(0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := e.get("/br/")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("breaker never let a probe through")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		if resp, _ := e.get("/br/"); resp.StatusCode != 200 {
			t.Fatalf("after recovery: %d", resp.StatusCode)
		}
	}
	if !strings.Contains(e.metrics(), `wolke_proxy_breaker_state{service="br"} 0`) {
		t.Error("breaker state metric does not say closed")
	}
}

func (e *env) metrics() string {
	resp, err := e.client.Get("http://" + e.proxy.AdminAddr() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestRetries(t *testing.T) {
	e := newEnv(t)
	good, flaky := newBackend(t, "good", nil), newBackend(t, "flaky", nil)
	flaky.fail.Store(503)
	tags := []string{"wolke.lb=round-robin", "wolke.outlier.failures=1000", "wolke.breaker.min-requests=1000"}
	e.register("r", good, tags...)
	e.register("r", flaky, tags...)
	e.waitInstances("r", 2)
	for i := 0; i < 20; i++ {
		if resp, _ := e.get("/r/"); resp.StatusCode != 200 {
			t.Fatalf("GET %d: %d, a 503 must be retried on the other instance", i, resp.StatusCode)
		}
	}
	var post503 int
	for i := 0; i < 20; i++ {
		if resp, _ := e.do(http.MethodPost, "/r/", "order"); resp.StatusCode == 503 {
			post503++
		}
	}
	if post503 == 0 {
		t.Error("a POST answered 503 was retried: POST is not idempotent")
	}

	// A single instance answering 503: the client gets that 503 and its body, not an
	// empty answer from a retry that had nowhere to go.
	alone := newBackend(t, "alone", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		io.WriteString(w, "busy")
	})
	e.register("alone", alone, tags...)
	e.waitInstances("alone", 1)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if resp, body := e.do(m, "/alone/", ""); resp.StatusCode != 503 || body != "busy" {
			t.Errorf("%s to a lone failing instance: %d %q, want its 503", m, resp.StatusCode, body)
		}
	}

	// A refused connection is retried for any method: the request never left.
	dead := newBackend(t, "dead", nil)
	dead.srv.Close()
	e.register("c", good, tags...)
	e.register("c", dead, tags...)
	e.waitInstances("c", 2)
	for i := 0; i < 20; i++ {
		if resp, _ := e.do(http.MethodPost, "/c/", "x"); resp.StatusCode != 200 {
			t.Fatalf("POST %d to a service with a dead instance: %d", i, resp.StatusCode)
		}
	}
	if !strings.Contains(e.metrics(), `wolke_proxy_retries_total{service="c"}`) {
		t.Error("no retry metric")
	}
}

func TestRetryBudgetCapsRetries(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.json")
	os.WriteFile(conf, []byte(`{"default": {"retry_budget_min_per_sec": 0, "attempts": 3, "breaker_min_requests": 100000, "outlier_failures": 100000}}`), 0o644)
	e := newEnv(t, func(c *Config) { c.ConfigFile = conf })
	var bs []*backend
	for i := 0; i < 3; i++ {
		b := newBackend(t, "b"+strconv.Itoa(i), nil)
		b.fail.Store(503)
		e.register("down", b)
		bs = append(bs, b)
	}
	e.waitInstances("down", 3)
	const n = 300
	for i := 0; i < n; i++ {
		if resp, _ := e.get("/down/"); resp.StatusCode != 503 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	var total int64
	for _, b := range bs {
		total += b.hits.Load()
	}
	retries := total - n
	t.Logf("%d requests to a dead service: %d tries, %d retries (unbudgeted: %d)", n, total, retries, 2*n)
	if retries > n/5+1 || retries < n/10 {
		t.Errorf("%d retries for %d requests, want about 20%%", retries, n)
	}
}

func TestTimeoutsAndNoGoroutineLeak(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	e.register("slow", slow, "wolke.timeout=300ms", "wolke.retry.attempts=1")
	e.waitInstances("slow", 1)
	e.get("/slow/") // warm up connections and goroutines
	before := runtime.NumGoroutine()
	t0 := time.Now()
	resp, body := e.get("/slow/")
	if resp.StatusCode != 504 || !strings.Contains(body, "timed out") {
		t.Errorf("never-answering upstream: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("timeout after %v, want about 300ms", d)
	}
	for i := 0; i < 10; i++ {
		e.get("/slow/")
	}
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	waitGoroutines(t, before+3)
}

func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), max, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("s", b)
	e.waitInstances("s", 1)
	e.get("/s/")
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"no host", "GET /s/ HTTP/1.1\r\n\r\n", 400},
		{"huge header", "GET /s/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"bad content-length", "POST /s/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
		{"body too large", "POST /s/ HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(32<<20) + "\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.proxy.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if resp, _ := e.get("/s/"); resp.StatusCode != 200 {
		t.Errorf("gateway unwell after bad input: %d", resp.StatusCode)
	}
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	waitGoroutines(t, before+3)
}

func TestWebSocketPassThrough(t *testing.T) {
	e := newEnv(t)
	ws := newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.URL.Path != "/chat" {
			http.Error(w, "want an upgrade to /chat", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo lines until the client hangs up.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	})
	e.register("ws", ws)
	e.waitInstances("ws", 1)
	c, err := net.Dial("tcp", e.proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "world"} {
		io.WriteString(c, msg+"\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo "+msg+"\n" {
			t.Fatalf("echo of %q: %q %v", msg, line, err)
		}
	}
}

func TestStreamingResponse(t *testing.T) {
	e := newEnv(t)
	next := make(chan struct{})
	sse := newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	})
	e.register("events", sse)
	e.waitInstances("events", 1)
	resp, err := e.client.Get(e.base + "/events/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{} // the next event is sent only after this one arrived
	}
}

func TestHTTP2(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	e := newEnv(t, func(c *Config) { c.TLSCert, c.TLSKey = cert, key })
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), r.URL.Path)
	})
	e.register("s", b)
	e.waitInstances("s", 1)

	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	resp, err := h2.Get("https://" + e.proxy.Addr() + "/s/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "https /hello" {
		t.Errorf("HTTP/2 over TLS: proto %s body %q", resp.Proto, body)
	}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	resp, err = h1.Get("https://" + e.proxy.Addr() + "/s/one")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 1 || string(body) != "https /one" {
		t.Errorf("HTTP/1.1 over TLS: proto %s body %q", resp.Proto, body)
	}
}

func TestH2C(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.H2C = true })
	b := newBackend(t, "b", nil)
	e.register("s", b)
	e.waitInstances("s", 1)
	h2c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}, Timeout: 5 * time.Second}
	resp, err := h2c.Get(e.base + "/s/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "b /x" {
		t.Errorf("h2c: %s %q", resp.Proto, body)
	}
	if _, body := e.get("/s/y"); body != "b /y" {
		t.Errorf("HTTP/1.1 beside h2c: %q", body)
	}
}

func TestAdminRoutesAndMetrics(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("m", b)
	e.waitInstances("m", 1)
	e.get("/m/")
	e.get("/nope")
	resp, err := e.client.Get("http://" + e.proxy.AdminAddr() + "/v1/proxy/routes")
	if err != nil {
		t.Fatal(err)
	}
	var routes []RouteInfo
	if err := json.NewDecoder(resp.Body).Decode(&routes); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, r := range routes {
		if r.Service == "m" && r.Prefix == "/m" && len(r.Instances) == 1 && r.Instances[0].Addr == b.srv.Listener.Addr().String() && r.Breaker == "closed" {
			found = true
		}
	}
	if !found {
		t.Errorf("routes: %+v", routes)
	}
	m := e.metrics()
	for _, want := range []string{
		`wolke_proxy_requests_total{code="2xx",route="m:/m"} 1`,
		`wolke_proxy_unrouted_requests_total 1`,
		`wolke_proxy_upstream_requests_total{instance="` + b.srv.Listener.Addr().String() + `",service="m"} 1`,
		`wolke_proxy_request_duration_seconds_count{route="m:/m"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	e := newEnv(t, func(c *Config) { c.AccessLog = &buf })
	b := newBackend(t, "b", nil)
	e.register("s", b)
	e.waitInstances("s", 1)
	e.get("/s/a?q=\"x\"", "X-Request-ID", "req-42")
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(buf.String(), "req-42") {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line: %q", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &line); err != nil {
		t.Fatalf("access log is not JSON: %v %q", err, buf.String())
	}
	if line["status"] != float64(200) || line["service"] != "s" || line["method"] != "GET" || line["uri"] != `/s/a?q="x"` || line["attempts"] != float64(1) {
		t.Errorf("access log line %v", line)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestGracefulShutdownDrains(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	})
	e.register("slow", slow)
	e.waitInstances("slow", 1)
	got := make(chan string, 1)
	go func() {
		resp, err := e.client.Get(e.base + "/slow/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.proxy.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if body := <-got; body != "done" {
		t.Errorf("in-flight request during shutdown got %q", body)
	}
	if _, err := net.DialTimeout("tcp", e.proxy.Addr(), time.Second); err == nil {
		t.Error("gateway still accepts after shutdown")
	}
}

func TestReloadStaticConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.json")
	b := newBackend(t, "b", nil)
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(`{"static": {"legacy": [{"address": %q, "port": %d}]}}`, b.host, b.port))
	e := newEnv(t, func(c *Config) { c.ConfigFile = conf })
	if _, body := e.get("/legacy/x"); body != "b /x" {
		t.Fatalf("static service: %q", body)
	}
	write(fmt.Sprintf(`{"services": {"legacy": {"routes": [{"prefix": "/old", "strip_prefix": true}]}}, "static": {"legacy": [{"address": %q, "port": %d}]}}`, b.host, b.port))
	if err := e.proxy.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get("/old/y"); body != "b /y" {
		t.Errorf("after reload: %q", body)
	}
	write(`{"default": {"attempts": 0}}`)
	if err := e.proxy.Reload(); err == nil || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("bad config accepted: %v", err)
	}
	if _, body := e.get("/old/z"); body != "b /z" {
		t.Errorf("a rejected reload changed routing: %q", body)
	}
}

func (e *env) putDoc(service, doc string) {
	e.t.Helper()
	if _, err := e.api.KV().Put(&api.KVPair{Key: DocPrefix + service, Value: []byte(doc)}, nil); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 s.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPolicyDocumentsFromKV(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("s", b)
	e.waitInstances("s", 1)

	e.putDoc("s", `{"routes": [{"prefix": "/shop", "strip_prefix": true}], "fault": {"abort_percent": 100, "abort_status": 418}}`)
	e.waitFor("the document's route", func() bool { resp, _ := e.get("/shop/x"); return resp.StatusCode == 418 })
	resp, body := e.get("/shop/x")
	if resp.Header.Get("X-Wolke-Rejected-By") != "fault" || !strings.Contains(body, "fault injected") {
		t.Errorf("fault answer: %v %q", resp.Header, body)
	}
	if !strings.Contains(e.metrics(), `wolke_proxy_rejected_total{cause="fault",service="s"}`) {
		t.Error("no rejection metric with cause fault")
	}

	// An invalid document is refused; the previous one stays in force.
	e.putDoc("s", `{"routes": [{"prefix": "/shop"}], "attempts": 99}`)
	e.waitFor("the rejection to show", func() bool {
		for _, d := range e.proxy.DocStatuses() {
			if d.Service == "s" && !d.Valid && strings.Contains(d.Error, "attempts") && d.InForce != 0 {
				return true
			}
		}
		return false
	})
	if resp, _ := e.get("/shop/x"); resp.StatusCode != 418 {
		t.Errorf("after an invalid document: %d, want the previous policy (418)", resp.StatusCode)
	}
	e.putDoc("s", `{"unknown_field": 1}`)
	e.waitFor("the unknown field to be refused", func() bool {
		for _, d := range e.proxy.DocStatuses() {
			if d.Service == "s" && strings.Contains(d.Error, "unknown_field") {
				return true
			}
		}
		return false
	})

	// Deleting the document restores the defaults.
	if _, err := e.api.KV().Delete(DocPrefix+"s", nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the default route", func() bool { _, body := e.get("/s/y"); return body == "b /y" })
}

func TestFaultInjectionShare(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("f", b)
	e.waitInstances("f", 1)
	e.putDoc("f", `{"fault": {"abort_percent": 10}}`)
	e.waitFor("the fault rule", func() bool {
		for i := 0; i < 50; i++ {
			if resp, _ := e.get("/f/"); resp.StatusCode == 503 {
				return true
			}
		}
		return false
	})
	const n = 5000
	var aborted int
	for i := 0; i < n; i++ {
		resp, _ := e.get("/f/")
		switch resp.StatusCode {
		case 503:
			aborted++
		case 200:
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	share := float64(aborted) / n
	t.Logf("10%% abort rule: %d of %d aborted (%.1f%%)", aborted, n, share*100)
	if share < 0.08 || share > 0.12 {
		t.Errorf("aborted %.3f, want 0.10 ± 0.02", share)
	}
}

// loadUntilStopped has workers GET path over and over until the returned stop is
// called, which waits for them. seen gets each answer's status or the error (not
// t.Fatal: these are not the test's goroutine); a worker ends when it returns false.
func (e *env) loadUntilStopped(workers int, path string, seen func(status int, err error) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := e.client.Get(e.base + path)
				status := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				if !seen(status, err) {
					return
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func TestPolicyChangeUnderLoadDropsNothing(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.register("hot", newBackend(t, "b"+strconv.Itoa(i), nil))
	}
	e.waitInstances("hot", 3)
	var sent, failed atomic.Int64
	stop := e.loadUntilStopped(8, "/hot/", func(status int, err error) bool {
		sent.Add(1)
		if err != nil || status != 200 {
			failed.Add(1)
		}
		return true
	})
	lbs := []string{"round-robin", "least-request", "p2c", "hash"}
	var idx uint64
	for i := 0; i < 12; i++ {
		e.putDoc("hot", fmt.Sprintf(`{"lb": %q, "timeout": "%ds", "attempts": %d}`, lbs[i%4], 10+i, 1+i%3))
		e.waitFor("the new document", func() bool {
			for _, d := range e.proxy.DocStatuses() {
				if d.Service == "hot" && d.Valid && d.InForce > idx {
					idx = d.InForce
					return true
				}
			}
			return false
		})
		time.Sleep(20 * time.Millisecond) // let load run on this version
	}
	stop()
	t.Logf("%d requests across 12 policy changes, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 || sent.Load() < 100 {
		t.Errorf("%d of %d requests failed during policy changes", failed.Load(), sent.Load())
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("rl", b)
	e.waitInstances("rl", 1)
	// A burst of one second: a client starved of CPU for a moment on a busy machine
	// does not forfeit tokens, so the admitted count measures the limiter alone.
	e.putDoc("rl", `{"rate_limit": {"rate": 200, "burst": 200, "key": "header:X-Client"}, "concurrency": {"disabled": true}}`)
	e.waitFor("the rate limit", func() bool { resp, _ := e.get("/rl/"); return resp.Header.Get("RateLimit-Limit") == "200" })

	// One client over its limit: 429 with Retry-After and the RateLimit headers; another
	// client has its own bucket.
	var limited *http.Response
	for i := 0; i < 1000 && limited == nil; i++ {
		if resp, _ := e.get("/rl/", "X-Client", "alice"); resp.StatusCode == 429 {
			limited = resp
		}
	}
	if limited == nil {
		t.Fatal("1000 requests in a burst of 200 at 200/s: none limited")
	}
	if limited.Header.Get("X-Wolke-Rejected-By") != "rate-limit" || limited.Header.Get("Retry-After") != "1" ||
		limited.Header.Get("RateLimit-Remaining") != "0" || limited.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("429 headers: %v", limited.Header)
	}
	if resp, _ := e.get("/rl/", "X-Client", "bob"); resp.StatusCode != 200 {
		t.Errorf("another client shares alice's bucket: %d", resp.StatusCode)
	}

	// Admitted rate over 3 s of offered load well above the limit: 200/s ± 5 %.
	const dur = 3 * time.Second
	var ok, sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < dur {
				req, _ := http.NewRequest("GET", e.base+"/rl/", nil)
				req.Header.Set("X-Client", "carol")
				resp, err := e.client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else if resp.StatusCode != 429 {
					t.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Wolke-Rejected-By"))
				}
			}
		}()
	}
	wg.Wait()
	// Requests start until dur has passed; the last ones are admitted a moment later.
	want := 200*dur.Seconds() + 200
	t.Logf("offered %d in %v, admitted %d (limit 200/s × %v + burst 200 = %.0f)", sent.Load(), time.Since(start), ok.Load(), dur, want)
	if sent.Load() < int64(2*want) {
		t.Skipf("the machine could not offer twice the limit (%d requests)", sent.Load())
	}
	if got := float64(ok.Load()); got < want*0.95 || got > want*1.05 {
		t.Errorf("admitted %v, want %.0f ± 5%%", got, want)
	}
}

// An upstream that serves 10 requests at a time in 20 ms each (500 rps) gets far more:
// the adaptive limit sheds the excess fast instead of queueing it.
func TestOverloadSheds(t *testing.T) {
	var logBuf lockedBuffer
	e := newEnv(t, func(c *Config) { c.AccessLog = &logBuf })
	sem := make(chan struct{}, 10)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		time.Sleep(20 * time.Millisecond)
		<-sem
	})
	e.register("ov", slow, "wolke.breaker.min-requests=1000000")
	e.waitInstances("ov", 1)
	// Normal traffic first: the limiter takes its latency baseline from the first
	// requests it admits, and a gateway that meets an overload has usually seen its
	// upstream at ease before. (Started under the flood, on a loaded machine with the
	// race detector, the baseline can come out near the overloaded latency, and then
	// only a later probe corrects it; see internal/adaptive.)
	for i := range 20 {
		if resp, body := e.get("/ov/"); resp.StatusCode != 200 {
			t.Fatalf("warm-up request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	warmHits := slow.hits.Load()
	var okN, shed, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	// At least 3 s, and on until the limiter has shed for a while: it starts at 100 and
	// shrinks a window at a time, which the race detector on a loaded 2-core machine
	// can stretch past 3 s (seen in CI). Bounded at 15 s.
	overloaded := func() bool {
		el := time.Since(start)
		return el < 3*time.Second || (el < 15*time.Second && shed.Load() < 100)
	}
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for overloaded() {
				resp, err := e.client.Get(e.base + "/ov/")
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					okN.Add(1)
				case resp.StatusCode == 503 && resp.Header.Get("X-Wolke-Rejected-By") == "concurrency":
					shed.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// How long the gateway took to refuse, from its own access log (the clients' view
	// adds their scheduling on a busy 2-core machine).
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(logBuf.String(), "\n") < int(okN.Load()+shed.Load())+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var shedDur, okDur []float64
	for _, line := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		var l struct {
			Time     time.Time `json:"time"`
			Status   int       `json:"status"`
			Rejected string    `json:"rejected_by"`
			Duration float64   `json:"duration_ms"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch {
		case l.Rejected == "concurrency":
			shedDur = append(shedDur, l.Duration)
		case l.Status == 200 && l.Time.After(start.Add(1500*time.Millisecond)):
			// Latency once the limit has settled: it starts at 100 and shrinks by
			// at most 10 % a window, about a second and a half from 100 to 15.
			okDur = append(okDur, l.Duration)
		}
	}
	sort.Float64s(shedDur)
	sort.Float64s(okDur)
	if len(shedDur) == 0 || len(okDur) == 0 {
		t.Fatalf("ok %d, shed %d: nothing was shed at 64 concurrent clients against a 10-wide upstream", okN.Load(), shed.Load())
	}
	p99shed := shedDur[len(shedDur)*99/100]
	p50ok := time.Duration(okDur[len(okDur)/2] * float64(time.Millisecond))
	t.Logf("ok %d (gateway time p50 %v), shed %d (gateway time p50 %.3f ms, p99 %.3f ms), other %d, upstream hits %d",
		okN.Load(), p50ok, shed.Load(), shedDur[len(shedDur)/2], p99shed, other.Load(), slow.hits.Load()-warmHits)
	if other.Load() != 0 {
		t.Errorf("%d requests failed otherwise", other.Load())
	}
	if p99shed > 10 {
		t.Errorf("p99 of a refusal %.1f ms, want < 10 ms", p99shed)
	}
	// No retry storm: what reached the upstream is what was admitted, nothing more.
	if hits := slow.hits.Load() - warmHits; hits > okN.Load()+int64(other.Load()) {
		t.Errorf("upstream got %d requests for %d admitted", hits, okN.Load())
	}
	// Once the overload is over, requests pass again at once.
	for i := 0; i < 20; i++ {
		if resp, _ := e.get("/ov/"); resp.StatusCode != 200 {
			t.Fatalf("after the overload, request %d: %d (%s)", i, resp.StatusCode, resp.Header.Get("X-Wolke-Rejected-By"))
		}
	}
	// Without shedding, 64 clients queue 6 deep behind 10 slots: 130 ms each.
	// The limiter settles where latency is about Tolerance × the baseline + Slack plus
	// its queue allowance (60–80 ms here); the race detector slows everything too much
	// to tell.
	if p50ok > 100*time.Millisecond && !raceEnabled {
		t.Errorf("admitted requests took %v (p50): the excess queued instead of being shed", p50ok)
	}
}

func TestAuthAndValidation(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seenIdentity []string
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenIdentity = append(seenIdentity, r.Header.Get("X-Wolke-Identity"))
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	e.register("secure", b)
	e.register("open", b)
	e.waitInstances("secure", 1)
	e.waitInstances("open", 1)

	secret := []byte("0123456789abcdef0123456789abcdef-wolke")
	jwks := fmt.Sprintf(`{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":%q}]}`, base64.RawURLEncoding.EncodeToString(secret))
	if _, err := e.api.KV().Put(&api.KVPair{Key: "wolke/gateway/jwks", Value: []byte(jwks)}, nil); err != nil {
		t.Fatal(err)
	}
	e.putDoc("secure", `{"auth": {"jwt": {"jwks_key": "wolke/gateway/jwks", "issuer": "shop", "audience": ["gateway"], "required_claims": {"role": "buyer"}}},
		"validation": {"methods": ["GET", "POST"], "max_body_bytes": 1024, "content_types": ["application/json"]}}`)
	e.waitFor("auth on the route", func() bool { resp, _ := e.get("/secure/"); return resp.StatusCode == 401 })
	mu.Lock()
	seenIdentity = nil // what passed before the policy applied
	mu.Unlock()

	token := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	good := token(jwt.MapClaims{"sub": "alice", "iss": "shop", "aud": "gateway", "role": "buyer", "exp": now.Add(time.Hour).Unix()})
	noRole := token(jwt.MapClaims{"sub": "bob", "iss": "shop", "aud": "gateway", "exp": now.Add(time.Hour).Unix()})
	expired := token(jwt.MapClaims{"sub": "carol", "iss": "shop", "aud": "gateway", "role": "buyer", "exp": now.Add(-time.Hour).Unix()})

	for _, tc := range []struct {
		name   string
		method string
		hdr    []string
		body   string
		status int
		by     string
	}{
		{"no token", "GET", nil, "", 401, "auth"},
		{"good token", "GET", []string{"Authorization", "Bearer " + good}, "", 200, ""},
		{"forged identity is replaced", "GET", []string{"Authorization", "Bearer " + good, "X-Wolke-Identity", "admin"}, "", 200, ""},
		{"expired", "GET", []string{"Authorization", "Bearer " + expired}, "", 401, "auth"},
		{"missing claim", "GET", []string{"Authorization", "Bearer " + noRole}, "", 403, "auth"},
		{"garbage token", "GET", []string{"Authorization", "Bearer x.y.z"}, "", 401, "auth"},
		{"method not allowed", "DELETE", []string{"Authorization", "Bearer " + good}, "", 405, "validation"},
		{"wrong content type", "POST", []string{"Authorization", "Bearer " + good, "Content-Type", "text/plain"}, "hi", 415, "validation"},
		{"body too large", "POST", []string{"Authorization", "Bearer " + good, "Content-Type", "application/json"}, strings.Repeat("x", 2048), 413, ""},
		{"good post", "POST", []string{"Authorization", "Bearer " + good, "Content-Type", "application/json"}, `{"a":1}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.method, "/secure/x", tc.body, tc.hdr...)
			if resp.StatusCode != tc.status || (tc.by != "" && resp.Header.Get("X-Wolke-Rejected-By") != tc.by) {
				t.Errorf("status %d rejected-by %q body %q; want %d %q", resp.StatusCode, resp.Header.Get("X-Wolke-Rejected-By"), body, tc.status, tc.by)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// A route without auth: a client-sent identity never reaches the service.
	e.get("/open/", "X-Wolke-Identity", "admin")
	mu.Lock()
	defer mu.Unlock()
	for _, id := range seenIdentity {
		if id != "" && id != "alice" {
			t.Errorf("the service saw identity %q", id)
		}
	}
	if len(seenIdentity) < 3 || seenIdentity[0] != "alice" || seenIdentity[len(seenIdentity)-1] != "" {
		t.Errorf("identities seen upstream: %q", seenIdentity)
	}
}

// A policy that cannot be built (a JWKS document missing, an invalid OpenAPI
// document) closes the route rather than leave it open; it opens once the document
// is there.
func TestBrokenPolicyFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.register("s", newBackend(t, "b", nil))
	e.register("j", newBackend(t, "b", nil))
	e.waitInstances("s", 1)
	e.waitInstances("j", 1)

	e.putDoc("j", `{"auth": {"jwt": {"jwks_key": "wolke/gateway/later-jwks"}}}`)
	e.waitFor("the JWT route to close", func() bool {
		resp, _ := e.get("/j/x")
		return resp.StatusCode == 503 && resp.Header.Get("X-Wolke-Rejected-By") == "config"
	})
	secret := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef-wolke"))
	if _, err := e.api.KV().Put(&api.KVPair{Key: "wolke/gateway/later-jwks", Value: []byte(`{"keys":[{"kty":"oct","kid":"k1","k":"` + secret + `"}]}`)}, nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the JWT route to open (401 without a token)", func() bool { resp, _ := e.get("/j/x"); return resp.StatusCode == 401 })

	if _, err := e.api.KV().Put(&api.KVPair{Key: "wolke/gateway/openapi/s", Value: []byte(`{"openapi": "3.0.0", "paths": 7}`)}, nil); err != nil {
		t.Fatal(err)
	}
	e.putDoc("s", `{"validation": {"openapi": "wolke/gateway/openapi/s"}}`)
	e.waitFor("the route to close", func() bool {
		resp, body := e.get("/s/x")
		return resp.StatusCode == 503 && strings.Contains(body, "policy") && resp.Header.Get("X-Wolke-Rejected-By") == "config"
	})
	doc := `{"openapi": "3.0.0", "info": {"title": "s", "version": "1"}, "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}}}`
	if _, err := e.api.KV().Put(&api.KVPair{Key: "wolke/gateway/openapi/s", Value: []byte(doc)}, nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the route to open with the fixed document", func() bool { resp, _ := e.get("/s/x"); return resp.StatusCode == 200 })
	if resp, body := e.get("/s/nope"); resp.StatusCode != 404 || !strings.Contains(body, "violation") {
		t.Errorf("a path outside the document: %d %q", resp.StatusCode, body)
	}
}

// Three gateways share a cluster-wide limit: each enforces a third, so the total
// admitted stays near the configured rate when clients spread over them.
func TestClusterWideRateLimit(t *testing.T) {
	e := newEnv(t)
	gws := []*Proxy{e.proxy}
	for i := 0; i < 2; i++ {
		cfg := DefaultConfig()
		cfg.Listen, cfg.AdminListen, cfg.APIAddr, cfg.AccessLog = "127.0.0.1:0", "127.0.0.1:0", e.proxy.cfg.APIAddr, nil
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Shutdown(context.Background()) })
		gws = append(gws, p)
	}
	e.register("c", newBackend(t, "b", nil))
	e.putDoc("c", `{"rate_limit": {"rate": 300, "burst": 300, "cluster": true}, "concurrency": {"disabled": true}}`)
	e.waitFor("three live gateways everywhere", func() bool {
		for _, g := range gws {
			if g.peers.Load() != 3 || g.instancesOf("c") != 1 {
				return false
			}
			if st := g.stateOf("c"); st == nil || st.limiter == nil || st.limiter.Share() > 0.34 {
				return false
			}
		}
		return true
	})
	const dur = 3 * time.Second
	var ok, sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := "http://" + gws[w%3].Addr() + "/c/"
			for time.Since(start) < dur {
				resp, err := e.client.Get(base)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	want := 300*dur.Seconds() + 300
	t.Logf("3 gateways, cluster limit 300/s: offered %d, admitted %d (want %.0f ± 15%%)", sent.Load(), ok.Load(), want)
	if got := float64(ok.Load()); got < want*0.85 || got > want*1.15 {
		t.Errorf("admitted %v, want %.0f ± 15%%", got, want)
	}

	// One gateway leaves: the other two take over its share.
	gws[2].Shutdown(context.Background())
	e.waitFor("two gateways left", func() bool { return gws[0].peers.Load() == 2 && gws[1].peers.Load() == 2 })
}

func (p *Proxy) stateOf(svc string) *serviceState {
	p.mu.Lock()
	s := p.services[svc]
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.state.Load()
}

func (p *Proxy) instancesOf(svc string) int {
	if st := p.stateOf(svc); st != nil {
		return len(st.endpoints)
	}
	return 0
}

func TestCache(t *testing.T) {
	var logBuf lockedBuffer
	e := newEnv(t, func(c *Config) { c.AccessLog = &logBuf })
	release := make(chan struct{})
	var gate atomic.Bool
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if gate.Load() {
			<-release // hold the first miss so that concurrent ones pile up behind it
		}
		w.Header().Set("Cache-Control", "public, max-age=1, stale-if-error=60")
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprintf(w, "article %s", r.URL.Path)
	})
	e.register("cat", b, "wolke.cache=true")
	e.waitInstances("cat", 1)

	resp, body := e.get("/cat/a/1")
	if resp.StatusCode != 200 || body != "article /a/1" || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=miss") {
		t.Fatalf("first GET: %d %q Cache-Status %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	hits := b.hits.Load()
	resp, body = e.get("/cat/a/1")
	if body != "article /a/1" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") || b.hits.Load() != hits || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("second GET: %q Cache-Status %q, upstream hits %d→%d, request ID %q", body, resp.Header.Get("Cache-Status"), hits, b.hits.Load(), resp.Header.Get("X-Request-Id"))
	}

	// 100 concurrent misses for one object: one upstream request.
	gate.Store(true)
	before := b.hits.Load()
	var wg sync.WaitGroup
	var okN atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.client.Get(e.base + "/cat/a/2")
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == "article /a/2" {
				okN.Add(1)
			}
		}()
	}
	e.waitFor("the first miss upstream", func() bool { return b.hits.Load() > before })
	// Give the other 99 a moment to queue behind it; those that come later are hits,
	// so the assertion below holds either way, and the package's own tests show the
	// coalescing deterministically.
	time.Sleep(50 * time.Millisecond)
	gate.Store(false)
	close(release)
	wg.Wait()
	if got := b.hits.Load() - before; got != 1 || okN.Load() != 100 {
		t.Errorf("100 concurrent misses: %d upstream requests, %d good answers", got, okN.Load())
	}

	// The instance goes away: stale-if-error serves the stored copy.
	b.srv.Close()
	e.waitFor("a stale answer", func() bool {
		resp, body := e.get("/cat/a/1")
		return resp.StatusCode == 200 && body == "article /a/1" && strings.Contains(resp.Header.Get("Cache-Status"), "stale")
	})
	if !strings.Contains(e.metrics(), "wolke_proxy_cache_hits_total") {
		t.Error("no cache metrics")
	}
	e.waitFor("the access log", func() bool { return strings.Contains(logBuf.String(), `"cache":"wolke; hit`) })
}

package chassis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wolke-platform/wolke/internal/balance"
	"github.com/wolke-platform/wolke/internal/breaker"
	"github.com/wolke-platform/wolke/internal/budget"
	"github.com/wolke-platform/wolke/internal/outlier"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// Errors of the client, wrapped in a *ClientError (and by http.Client in a
// *url.Error); test them with errors.Is.
var (
	// ErrNoInstances: the service has no passing instance (or every one is ejected or
	// was already tried).
	ErrNoInstances = errors.New("no passing instance")
	// ErrCircuitOpen: the service's circuit breaker is open; the request was not sent.
	ErrCircuitOpen = errors.New("circuit breaker open")
	// ErrUpstreamStatus: the final attempt's response was a 5xx (the error a Fallback
	// gets in that case; without a Fallback the response itself is returned).
	ErrUpstreamStatus = errors.New("upstream answered with a server error")
)

// ClientError is the error of a request to a service that did not get a usable
// answer; Fallback hooks receive it.
type ClientError struct {
	Service    string
	Attempts   int           // attempts made (0 when none was sent)
	StatusCode int           // the last response's status, for ErrUpstreamStatus
	RetryAfter time.Duration // for ErrCircuitOpen: when the breaker lets probes through
	Err        error         // ErrNoInstances, ErrCircuitOpen, ErrUpstreamStatus or the transport's error
}

func (e *ClientError) Error() string {
	switch {
	case errors.Is(e.Err, ErrUpstreamStatus):
		return fmt.Sprintf("service %s: %v (%d) after %d attempts", e.Service, e.Err, e.StatusCode, e.Attempts)
	case e.Attempts == 0:
		return fmt.Sprintf("service %s: %v", e.Service, e.Err)
	}
	return fmt.Sprintf("service %s: %v (after %d attempts)", e.Service, e.Err, e.Attempts)
}

func (e *ClientError) Unwrap() error { return e.Err }

// ClientOptions tune a client made by ClientWith. The zero value takes the defaults.
type ClientOptions struct {
	// Timeout bounds one attempt until its response headers arrive (reading the body
	// is bounded by the request's context only). Default 2s. The caller's deadline, if
	// sooner, wins, and the smaller of the two is sent on as X-Request-Timeout.
	Timeout time.Duration
	// MaxAttempts is the number of attempts per request, the first included: retries go
	// to other instances, only for requests that are safe to repeat (GET, HEAD,
	// OPTIONS, TRACE, PUT, DELETE, or an Idempotency-Key header, with a body that can
	// be replayed) after a transport error, a timeout or a 502/503/504; any request is
	// retried after a connection that could not be made (it never left this process).
	// Retries also need the service's retry budget (20% of requests + 10/s). Default 3;
	// 1 turns retries off.
	MaxAttempts int
	// Fallback, if set, answers a request to a service that could not be answered:
	// breaker open, no instance, every attempt failed or the last response was a 5xx.
	// It gets the *ClientError; what it returns is the client's result. Use it for
	// graceful degradation ("the page without recommendations"); see StaticResponse.
	Fallback func(req *http.Request, err error) (*http.Response, error)
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	return o
}

// Client returns the instance's HTTP client (one, shared, safe for concurrent use).
// A URL whose host is a service name, http://<service>/path, goes to a passing
// instance of that service, found in the catalog (kept current by blocking queries:
// no lookup per request), chosen by power of two choices over peak-EWMA latency and
// in-flight requests, with retries on other instances, passive ejection of failing
// instances, a circuit breaker and a retry budget per service, per-attempt timeouts,
// and the caller's context and deadline. Other URLs (with a port or a dot in the host,
// or https) are sent as they are. Both carry the W3C trace context, the request ID of
// the request being served, and X-Request-Timeout.
func (in *Instance) Client() *http.Client {
	in.clientOnce.Do(func() { in.defClient = in.ClientWith(ClientOptions{}) })
	return in.defClient
}

// ClientWith returns a client with its own options (a timeout, a fallback) that
// shares the instance's connections, breakers, budgets and catalog watches.
func (in *Instance) ClientWith(opts ClientOptions) *http.Client {
	opts = opts.withDefaults()
	core := in.clientCore()
	return &http.Client{Transport: &transport{core: core, opts: opts, base: core.transport(opts.Timeout)}}
}

// StaticResponse builds a response for a Fallback hook: status, Content-Type and body.
func StaticResponse(req *http.Request, status int, contentType, body string) *http.Response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

// clientCore is what every client of an instance shares: connections, the catalog
// watcher and the per-service state.
type clientCore struct {
	in    *Instance
	watch *servicewatch.Watcher

	mu         sync.Mutex
	targets    map[string]*target                 // guarded by mu; read through targetMap
	targetMap  atomic.Pointer[map[string]*target] // a copy of targets, for lock-free reads
	transports map[time.Duration]*http.Transport  // one pool per attempt timeout
}

func (c *clientCore) lookupTarget(name string) *target {
	if m := c.targetMap.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

func (in *Instance) clientCore() *clientCore {
	in.coreOnce.Do(func() {
		core := &clientCore{
			in:         in,
			watch:      servicewatch.New(servicewatch.Config{Client: in.consul, Logger: in.log.With("component", "servicewatch")}),
			targets:    map[string]*target{},
			transports: map[time.Duration]*http.Transport{},
		}
		in.mu.Lock()
		in.core = core
		in.mu.Unlock()
	})
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.core == nil {
		// Closed: a client of a closed instance fails its requests.
		in.core = &clientCore{in: in, watch: servicewatch.New(servicewatch.Config{Client: in.consul}),
			targets: map[string]*target{}, transports: map[time.Duration]*http.Transport{}}
		in.core.watch.Close()
	}
	return in.core
}

// transport returns the connection pool of clients with the given attempt timeout,
// which is its ResponseHeaderTimeout (a timer per request would cost more).
func (c *clientCore) transport(timeout time.Duration) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tr := c.transports[timeout]; tr != nil {
		return tr
	}
	tr := &http.Transport{
		Proxy:                  nil, // instances are dialled directly, never through HTTP_PROXY
		DialContext:            (&net.Dialer{Timeout: min(timeout, 2*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        60 * time.Second, // below the server's IdleTimeout (2m)
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	c.transports[timeout] = tr
	return tr
}

// close stops the watches and drops idle connections.
func (c *clientCore) close() {
	c.watch.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}

// healthy counts the passing instances of a service (for Requires).
func (c *clientCore) healthy(ctx context.Context, name string) (int, error) {
	list, err := c.watch.Service(ctx, name)
	return len(list), err
}

// target is the client state of one upstream service.
type target struct {
	name    string
	policy  balance.Policy
	breaker *breaker.Breaker
	budget  *budget.Budget
	outlier *outlier.Detector

	watched atomic.Bool // the watcher has answered once: lookups no longer block

	// The target's series, resolved once.
	duration prometheus.Observer
	retries  prometheus.Counter
	codes    atomic.Pointer[map[int]prometheus.Counter] // copied on write

	mu      sync.Mutex
	srcData *servicewatch.Instance // identity of the instance list eps was built from
	srcLen  int
	eps     []*endpoint
	bal     []*balance.Endpoint // eps' balance endpoints, in the same order
}

type endpoint struct {
	bal  *balance.Endpoint
	host outlier.Host
}

func (c *clientCore) target(name string) *target {
	if t := c.lookupTarget(name); t != nil {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.targets[name]; t != nil {
		return t
	}
	m := c.in.metrics
	policy, _ := balance.New(balance.P2C)
	bcfg := breaker.DefaultConfig()
	bcfg.OnStateChange = func(from, to breaker.State) {
		m.clientBreaker.WithLabelValues(name).Set(float64(to))
		c.in.log.Warn("circuit breaker changed state", "upstream", name, "from", from.String(), "to", to.String())
	}
	ocfg := outlier.DefaultConfig()
	ocfg.BaseEjection, ocfg.MaxEjection = 10*time.Second, 2*time.Minute
	ocfg.OnEject = func(h *outlier.Host, d time.Duration) {
		c.in.log.Warn("instance ejected after consecutive failures", "upstream", name, "for", d.String())
	}
	t := &target{
		name:    name,
		policy:  policy,
		breaker: breaker.New(bcfg),
		budget:  budget.New(budget.DefaultConfig()),
		outlier: outlier.New(ocfg),
	}
	t.duration = m.clientDuration.WithLabelValues(name)
	t.retries = m.clientRetries.WithLabelValues(name)
	m.clientBreaker.WithLabelValues(name).Set(0)
	c.targets[name] = t
	snapshot := maps.Clone(c.targets)
	c.targetMap.Store(&snapshot)
	return t
}

// countCode counts a request that ended with the status code (0: no response).
func (t *target) countCode(m *metrics, code int) {
	if cur := t.codes.Load(); cur != nil {
		if c := (*cur)[code]; c != nil {
			c.Inc()
			return
		}
	}
	label := "error"
	if code > 0 {
		label = codeLabel(code)
	}
	c := m.clientRequests.WithLabelValues(t.name, label)
	t.mu.Lock()
	next := map[int]prometheus.Counter{code: c}
	if cur := t.codes.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	t.codes.Store(&next)
	t.mu.Unlock()
	c.Inc()
}

// sync rebuilds the endpoints when the watcher has a new instance list (a pointer
// comparison otherwise). Endpoints of instances that stay keep their statistics.
func (t *target) sync(list []servicewatch.Instance) ([]*endpoint, []*balance.Endpoint) {
	data := unsafe.SliceData(list)
	t.mu.Lock()
	defer t.mu.Unlock()
	if data == t.srcData && len(list) == t.srcLen && t.eps != nil {
		return t.eps, t.bal
	}
	old := make(map[string]*endpoint, len(t.eps))
	for _, e := range t.eps {
		old[e.bal.ID+"@"+e.bal.Addr] = e
	}
	eps := make([]*endpoint, 0, len(list))
	bal := make([]*balance.Endpoint, 0, len(list))
	for _, inst := range list {
		addr := net.JoinHostPort(inst.Address, fmt.Sprint(inst.Port))
		key := inst.EndpointID() + "@" + addr
		e := old[key]
		if e != nil && e.bal.Weight == inst.Weight {
			delete(old, key)
		} else {
			e = &endpoint{bal: balance.NewEndpoint(inst.EndpointID(), addr, inst.Weight)}
			t.outlier.Track(&e.host)
		}
		eps = append(eps, e)
		bal = append(bal, e.bal)
	}
	for _, e := range old {
		t.outlier.Untrack(&e.host)
	}
	t.srcData, t.srcLen, t.eps, t.bal = data, len(list), eps, bal
	return eps, bal
}

package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/adaptive"
	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/balance"
	"github.com/wolke-platform/wolke/internal/breaker"
	"github.com/wolke-platform/wolke/internal/budget"
	"github.com/wolke-platform/wolke/internal/httpcache"
	"github.com/wolke-platform/wolke/internal/outlier"
	"github.com/wolke-platform/wolke/internal/ratelimit"
	"github.com/wolke-platform/wolke/internal/reqvalidate"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// endpoint is one instance of a service with its connection pool and statistics.
// It outlives catalog updates that keep the instance, so pooled connections, latency
// estimates and ejection state survive them.
type endpoint struct {
	inst   servicewatch.Instance
	bal    *balance.Endpoint
	host   outlier.Host
	client *fasthttp.HostClient
	// ap is the instance's address when it is an IP address: the event loop
	// dials only those (a name needs a resolver, which blocks).
	ap netip.AddrPort
	// loopConns counts the event loops' connections to the instance; gone is set
	// when it leaves the service, so that the loops close their idle ones.
	loopConns atomic.Int64
	gone      atomic.Bool
	reqs      prometheus.Counter
	errs      prometheus.Counter
	latency   prometheus.Observer
}

// service is the gateway's runtime for one catalog service.
type service struct {
	name string

	// mu guards the fields below; the request path reads state instead.
	mu      sync.Mutex
	policy  Policy
	enabled bool

	state atomic.Pointer[serviceState]

	retries   prometheus.Counter
	ejections prometheus.Counter
	rejected  *prometheus.CounterVec
	inflight  prometheus.Gauge
	breakerG  prometheus.Gauge
	concLimit prometheus.Gauge
}

// serviceState is what one request of a service needs, swapped as a whole.
type serviceState struct {
	svc        *service
	policy     Policy
	lb         balance.Policy
	endpoints  []*endpoint
	breaker    *breaker.Breaker
	outlier    *outlier.Detector
	budget     *budget.Budget
	hashHeader []byte
	hashCookie []byte

	limiter  *ratelimit.Limiter // nil: no rate limit
	limitKey limitKey
	conc     *adaptive.Limiter // nil: no concurrency limit

	cache     *httpcache.Cache       // the gateway's shared cache; nil: not cached
	auth      *authn.Authenticator   // nil: no authentication
	validator *reqvalidate.Validator // nil: no validation
	// loopOK: the event loop can forward this service's requests itself (no auth,
	// validation, fault rule, cache or hashing by cookie, and every instance has an
	// IP address without a zone).
	loopOK bool
	// broken says why a policy the route requires could not be built (a JWKS file
	// missing, an OpenAPI document invalid): the route then refuses with 503 rather
	// than run unprotected.
	broken string
}

// limitKey is what a rate limit counts by.
type limitKey struct {
	kind byte   // 'r' route, 'i' client IP, 'h' header, 'd' identity, 'c' claim
	name []byte // the header or claim
}

func parseLimitKey(k string) limitKey {
	switch {
	case k == "ip":
		return limitKey{kind: 'i'}
	case k == "identity":
		return limitKey{kind: 'd'}
	case strings.HasPrefix(k, "header:"):
		return limitKey{kind: 'h', name: []byte(strings.TrimPrefix(k, "header:"))}
	case strings.HasPrefix(k, "claim:"):
		return limitKey{kind: 'c', name: []byte(strings.TrimPrefix(k, "claim:"))}
	}
	return limitKey{kind: 'r'}
}

func (p *Proxy) newService(name string) *service {
	l := prometheus.Labels{"service": name}
	s := &service{
		name:      name,
		retries:   p.metrics.retries.With(l),
		ejections: p.metrics.ejections.With(l),
		rejected:  p.metrics.rejected.MustCurryWith(l),
		inflight:  p.metrics.inflight.With(l),
		breakerG:  p.metrics.breaker.With(l),
		concLimit: p.metrics.concLimit.With(l),
	}
	return s
}

// update applies a new policy and instance list. Endpoints that stay keep their
// pools and statistics; the breaker, detector and budget are rebuilt only when their
// settings change, so a catalog update does not forget a failing service's history.
func (p *Proxy) updateService(s *service, pol Policy, enabled bool, insts []servicewatch.Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Load()
	st := &serviceState{svc: s, policy: pol, hashHeader: []byte(pol.HashHeader), hashCookie: []byte(pol.HashCookie)}
	if pol.Cache != nil && pol.Cache.Enabled {
		st.cache = p.cache
	}
	st.lb, _ = balance.New(pol.LB) // validated by servicePolicy
	if old != nil && sameBreaker(old.policy, pol) {
		st.breaker = old.breaker
	} else {
		cfg := breaker.DefaultConfig()
		cfg.FailureRatio = pol.BreakerFailureRatio
		cfg.MinRequests = pol.BreakerMinRequests
		cfg.OpenTimeout = time.Duration(pol.BreakerOpenTimeout)
		g := s.breakerG
		cfg.OnStateChange = func(_, to breaker.State) { g.Set(float64(to)) }
		st.breaker = breaker.New(cfg)
		g.Set(float64(breaker.Closed))
	}
	if old != nil && sameOutlier(old.policy, pol) {
		st.outlier = old.outlier
	} else {
		cfg := outlier.DefaultConfig()
		cfg.ConsecutiveFailures = pol.OutlierFailures
		cfg.BaseEjection = time.Duration(pol.OutlierBaseEjection)
		cfg.MaxEjection = time.Duration(pol.OutlierMaxEjection)
		cfg.MaxEjectionPercent = pol.OutlierMaxPercent
		ej := s.ejections
		name := s.name
		log := p.log
		cfg.OnEject = func(h *outlier.Host, d time.Duration) {
			ej.Inc()
			log.Warn("instance ejected", "service", name, "for", d, "ejections", h.Ejections())
		}
		st.outlier = outlier.New(cfg)
	}
	if old != nil && old.policy.RetryBudgetRatio == pol.RetryBudgetRatio && old.policy.RetryBudgetMinPerSec == pol.RetryBudgetMinPerSec {
		st.budget = old.budget
	} else {
		cfg := budget.DefaultConfig()
		cfg.Ratio, cfg.MinPerSecond = pol.RetryBudgetRatio, pol.RetryBudgetMinPerSec
		st.budget = budget.New(cfg)
	}

	if rl := pol.RateLimit; rl != nil {
		if old != nil && old.limiter != nil && old.policy.RateLimit != nil && *old.policy.RateLimit == *rl {
			st.limiter = old.limiter // same limit: keep the buckets
		} else {
			cfg := ratelimit.DefaultConfig()
			cfg.Rate, cfg.Burst = rl.Rate, rl.Burst
			if rl.Cluster {
				cfg.Share = 1 / float64(max(p.peers.Load(), 1))
			}
			st.limiter = ratelimit.New(cfg)
		}
		st.limitKey = parseLimitKey(rl.Key)
	}
	if c := pol.Concurrency; c == nil || !c.Disabled {
		if old != nil && old.conc != nil && sameConcurrency(old.policy.Concurrency, c) {
			st.conc = old.conc
		} else {
			cfg := adaptive.DefaultConfig()
			if c != nil && c.MinLimit > 0 {
				cfg.MinLimit = c.MinLimit
			}
			if c != nil && c.MaxLimit > 0 {
				cfg.MaxLimit = c.MaxLimit
			}
			cfg.InitialLimit = min(max(cfg.InitialLimit, cfg.MinLimit), cfg.MaxLimit)
			g := s.concLimit
			cfg.OnLimitChange = func(limit int) { g.Set(float64(limit)) }
			st.conc = adaptive.New(cfg)
			g.Set(float64(st.conc.Limit()))
		}
	}

	p.buildGuards(s.name, old, st)

	prev := map[string]*endpoint{}
	if old != nil {
		for _, e := range old.endpoints {
			prev[endpointKey(e.bal.ID, e.bal.Addr, e.bal.Weight)] = e
		}
	}
	for _, in := range insts {
		addr := net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
		key := endpointKey(in.EndpointID(), addr, in.Weight)
		e := prev[key]
		if e != nil && old.policy.ConnectTimeout == pol.ConnectTimeout && old.policy.HeaderTimeout == pol.HeaderTimeout {
			delete(prev, key)
		} else {
			e = p.newEndpoint(s.name, in, addr, pol)
		}
		st.outlier.Track(&e.host)
		st.endpoints = append(st.endpoints, e)
	}
	for _, e := range prev {
		if old.outlier == st.outlier {
			st.outlier.Untrack(&e.host)
		}
		e.retire()
		p.metrics.forgetEndpoint(s.name, e.bal.Addr)
	}
	st.loopOK = pol.Fault == nil && st.broken == "" && st.auth == nil && st.validator == nil &&
		st.cache == nil && len(st.hashCookie) == 0
	for _, e := range st.endpoints {
		// A zoned IPv6 address (fe80::1%eth0) needs the interface's index, which
		// the loops' dialer does not look up.
		st.loopOK = st.loopOK && e.ap.IsValid() && e.ap.Addr().Zone() == ""
	}
	s.policy, s.enabled = pol, enabled
	s.state.Store(st)
}

// endpointKey identifies an endpoint that can be kept across updates: same instance,
// address and weight (balance.Endpoint's weight is fixed once in use).
func endpointKey(id, addr string, weight int) string {
	return id + "\x00" + addr + "\x00" + strconv.Itoa(weight)
}

func sameConcurrency(a, b *ConcurrencyPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameBreaker(a, b Policy) bool {
	return a.BreakerFailureRatio == b.BreakerFailureRatio && a.BreakerMinRequests == b.BreakerMinRequests &&
		a.BreakerOpenTimeout == b.BreakerOpenTimeout
}

func sameOutlier(a, b Policy) bool {
	return a.OutlierFailures == b.OutlierFailures && a.OutlierBaseEjection == b.OutlierBaseEjection &&
		a.OutlierMaxEjection == b.OutlierMaxEjection && a.OutlierMaxPercent == b.OutlierMaxPercent
}

func (p *Proxy) newEndpoint(svc string, in servicewatch.Instance, addr string, pol Policy) *endpoint {
	connect := time.Duration(pol.ConnectTimeout)
	e := &endpoint{
		inst: in,
		bal:  balance.NewEndpoint(in.EndpointID(), addr, in.Weight),
		client: &fasthttp.HostClient{
			Addr: addr,
			// One dial attempt per try: the gateway's own retry loop picks another
			// instance instead of hammering a dead one.
			Dial: func(a string) (net.Conn, error) { return fasthttp.DialTimeout(a, connect) },
			// Idle keep-alive connections that the upstream closed are retried
			// once by the client itself (the request never reached the service).
			MaxIdemponentCallAttempts: 2,
			MaxConns:                  p.cfg.MaxConnsPerInstance,
			MaxConnWaitTimeout:        time.Duration(pol.HeaderTimeout),
			MaxIdleConnDuration:       90 * time.Second,
			ReadTimeout:               time.Duration(pol.HeaderTimeout),
			WriteTimeout:              time.Duration(pol.HeaderTimeout),
			ReadBufferSize:            16 << 10,
			WriteBufferSize:           16 << 10,
			StreamResponseBody:        true,
			DisablePathNormalizing:    true,
			NoDefaultUserAgentHeader:  true,
		},
	}
	e.ap, _ = netip.ParseAddrPort(addr)
	e.reqs, e.errs, e.latency = p.metrics.endpointMetrics(svc, addr)
	return e
}

// retire closes an endpoint's idle connections when it leaves its service.
func (e *endpoint) retire() {
	e.gone.Store(true)
	e.client.CloseIdleConnections()
}

// candidates fills buf with the endpoints a try may use: not ejected by outlier
// detection and not already tried by this request. When every endpoint is ejected it
// falls back to all untried ones, since a maybe-bad instance beats none.
func (st *serviceState) candidates(buf []*balance.Endpoint, tried []*endpoint) []*balance.Endpoint {
	buf = buf[:0]
	for _, e := range st.endpoints {
		if !wasTried(tried, e) && !st.outlier.Ejected(&e.host) {
			buf = append(buf, e.bal)
		}
	}
	if len(buf) == 0 {
		for _, e := range st.endpoints {
			if !wasTried(tried, e) {
				buf = append(buf, e.bal)
			}
		}
	}
	return buf
}

func wasTried(tried []*endpoint, e *endpoint) bool {
	for _, t := range tried {
		if t == e {
			return true
		}
	}
	return false
}

func (st *serviceState) endpointOf(b *balance.Endpoint) *endpoint {
	for _, e := range st.endpoints {
		if e.bal == b {
			return e
		}
	}
	return nil
}

// Package proxy is wolke's edge gateway: a reverse proxy whose routes come from the
// catalog by blocking queries, with load balancing, outlier ejection, retries within
// a budget, circuit breaking and timeouts per service.
//
// Plain HTTP/1.1, the hot path, is served by event loops on Linux (loop_linux.go:
// epoll, a loop per processor, as nginx does), which forward the requests of routes
// that need nothing but balancing and resilience and hand every other connection to
// fasthttp, a goroutine per connection (Config.Goroutines serves everything so).
// TLS with HTTP/2 and cleartext h2c go through net/http, adapted onto fasthttp's
// handler.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/httpcache"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// Config configures a gateway.
type Config struct {
	Listen      string // client-facing address, e.g. ":8080"
	AdminListen string // metrics and /v1/proxy/routes; "" disables the admin listener
	APIAddr     string // the agent whose catalog is followed, host:port
	Token       string // ACL token for the agent's API
	Domain      string // default routes answer Host <service>.<Domain>

	TLSCert, TLSKey string // serve TLS (HTTP/2 and HTTP/1.1 by ALPN) instead of plain HTTP
	H2C             bool   // also accept cleartext HTTP/2 (prior knowledge) on a plain listener
	// Goroutines serves plain HTTP/1.1 with a goroutine per connection (fasthttp)
	// instead of the event loops (Linux only; elsewhere it is always so).
	Goroutines bool

	ConfigFile string // static configuration (JSON), re-read by Reload

	// GatewayService is the name under which the gateway registers itself in the
	// catalog, so that gateways find each other (cluster-wide rate limits are split
	// among the live ones); "" disables registration.
	GatewayService string
	AccessLog      io.Writer // JSON lines; nil disables

	CacheSize           int64         // bytes of the shared HTTP cache
	MaxConnsPerInstance int           // upstream connections per instance
	MaxRequestBodySize  int           // larger bodies get 413
	ClientIdleTimeout   time.Duration // keep-alive connections idle this long are closed
	ClientReadTimeout   time.Duration // for reading a request from a client

	Logger *slog.Logger
}

// DefaultConfig returns a gateway on :8080 with its admin listener on 127.0.0.1:8081,
// following the agent on 127.0.0.1:8500.
func DefaultConfig() Config {
	return Config{
		Listen:              ":8080",
		AdminListen:         "127.0.0.1:8081",
		APIAddr:             "127.0.0.1:8500",
		Domain:              "wolke",
		GatewayService:      "wolke-gateway",
		AccessLog:           os.Stdout,
		CacheSize:           64 << 20,
		MaxConnsPerInstance: 1024,
		MaxRequestBodySize:  16 << 20,
		ClientIdleTimeout:   90 * time.Second,
		ClientReadTimeout:   30 * time.Second,
	}
}

// staticConfig is the file given with -config. Every field is optional.
type staticConfig struct {
	// Default overrides DefaultPolicy for every service.
	Default json.RawMessage `json:"default"`
	// Services overrides the policy of single services (before their tags).
	Services map[string]json.RawMessage `json:"services"`
	// Static lists instances of services that are not in the catalog.
	Static map[string][]StaticInstance `json:"static"`
}

// StaticInstance is an upstream given in the configuration file.
type StaticInstance struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
	Weight  int    `json:"weight"`
}

// Proxy is a running gateway.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	access  *accessLog
	cache   *httpcache.Cache
	watcher *servicewatch.Watcher
	// apiTransport's idle connections are closed on shutdown: a dial that completed
	// after its query was cancelled leaves a connection that never carried a request,
	// and an agent shutting down waits for those.
	apiTransport *http.Transport

	table    atomic.Pointer[table]
	inflight atomic.Int64
	peers    atomic.Int64 // live gateways, this one included (cluster-wide limits)
	// bodyLimits is set once any route limits request bodies below the server's
	// limit; until then the header hook has nothing to do.
	bodyLimits atomic.Bool
	authDeps   authn.Deps
	apiKeys    *authn.APIKeyStore

	// registration in the catalog
	agent    *api.Agent
	regID    string
	ttlCheck bool

	mu       sync.Mutex
	static   staticConfig
	base     Policy
	services map[string]*service
	settings map[string]map[string]string       // last non-empty settings per service
	insts    map[string][]servicewatch.Instance // catalog instances per service
	problems map[string][]string                // per service: settings that were rejected
	docs     map[string]*doc                    // policy documents from the KV store
	kvDocs   map[string][]byte                  // other documents under wolke/gateway/ (OpenAPI), by key

	srv      *fasthttp.Server
	servers  []shutdowner
	ln       net.Listener
	adminLn  net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown sync.Once
}

type shutdowner interface{ Shutdown(context.Context) error }

// New checks cfg and builds a gateway; Start runs it.
func New(cfg Config) (*Proxy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("proxy: -tls-cert and -tls-key go together")
	}
	if cfg.MaxConnsPerInstance <= 0 || cfg.MaxRequestBodySize <= 0 {
		return nil, errors.New("proxy: connection and body limits must be positive")
	}
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "proxy"),
		reg:      prometheus.NewRegistry(),
		services: map[string]*service{},
		settings: map[string]map[string]string{},
		insts:    map[string][]servicewatch.Instance{},
		problems: map[string][]string{},
		docs:     map[string]*doc{},
		kvDocs:   map[string][]byte{},
	}
	p.peers.Store(1)
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.metrics = newMetrics(p.reg)
	ccfg := httpcache.DefaultConfig()
	if cfg.CacheSize > 0 {
		ccfg.MaxBytes = cfg.CacheSize
	}
	p.cache = httpcache.New(ccfg)
	p.reg.MustRegister(newCacheCollector(p.cache))
	if err := p.loadConfig(); err != nil {
		return nil, err
	}
	p.table.Store(newTable(nil))
	if cfg.AccessLog != nil {
		p.access = newAccessLog(cfg.AccessLog)
	}
	return p, nil
}

// loadConfig reads the static configuration file; on error the previous one stays.
func (p *Proxy) loadConfig() error {
	var sc staticConfig
	base := DefaultPolicy()
	if p.cfg.ConfigFile != "" {
		b, err := os.ReadFile(p.cfg.ConfigFile)
		if err != nil {
			return fmt.Errorf("proxy config: %w", err)
		}
		if err := json.Unmarshal(b, &sc); err != nil {
			return fmt.Errorf("proxy config %s: %w", p.cfg.ConfigFile, err)
		}
		if len(sc.Default) > 0 {
			if err := strictUnmarshal(sc.Default, &base); err != nil {
				return fmt.Errorf("proxy config %s: default: %w", p.cfg.ConfigFile, err)
			}
		}
		if err := base.Validate(); err != nil {
			return fmt.Errorf("proxy config %s: default: %w", p.cfg.ConfigFile, err)
		}
		for name, raw := range sc.Services {
			pol := base
			if err := strictUnmarshal(raw, &pol); err != nil {
				return fmt.Errorf("proxy config %s: service %s: %w", p.cfg.ConfigFile, name, err)
			}
			if err := pol.Validate(); err != nil {
				return fmt.Errorf("proxy config %s: service %s: %w", p.cfg.ConfigFile, name, err)
			}
		}
		for name, insts := range sc.Static {
			for _, in := range insts {
				if net.ParseIP(in.Address) == nil && in.Address == "" || in.Port < 1 || in.Port > 65535 {
					return fmt.Errorf("proxy config %s: static %s: bad address %q port %d", p.cfg.ConfigFile, name, in.Address, in.Port)
				}
			}
		}
	}
	p.mu.Lock()
	p.static, p.base = sc, base
	p.mu.Unlock()
	return nil
}

func strictUnmarshal(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Start listens and begins following the catalog. Routes appear as the first
// blocking queries answer.
func (p *Proxy) Start(ctx context.Context) error {
	apiCfg := api.DefaultConfig()
	apiCfg.Address = p.cfg.APIAddr
	apiCfg.Token = p.cfg.Token
	// One blocking query per service stays open; without enough idle connections
	// per host the client would close and re-dial them all the time.
	apiCfg.Transport.MaxIdleConnsPerHost = 4096
	client, err := api.NewClient(apiCfg)
	if err != nil {
		return fmt.Errorf("proxy: agent client: %w", err)
	}
	p.apiTransport = apiCfg.Transport
	p.apiKeys = authn.NewAPIKeyStore(client, p.log)
	p.authDeps = authn.Deps{KV: authn.NewConsulKV(client), APIKeys: p.apiKeys, HTTP: &fasthttp.Client{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, NoDefaultUserAgentHeader: true,
	}, Logger: p.log}
	{
		// API keys are read once before serving, so that no valid key is refused at
		// start; the store keeps following the KV store afterwards.
		kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := p.apiKeys.Start(kctx); err != nil {
			p.log.Warn("API keys not read yet; the store keeps trying", "err", err)
		}
		cancel()
	}
	wcfg := servicewatch.DefaultConfig()
	wcfg.Client = client
	wcfg.Logger = p.log
	// Any server may answer: the gateway must keep routing while the servers elect
	// a leader, and a routing table a few milliseconds stale is harmless.
	wcfg.Stale = true
	p.watcher = servicewatch.New(wcfg)
	p.watcher.OnChange(p.onCatalog)

	if err := p.listen(); err != nil {
		p.watcher.Close()
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := p.watcher.WatchCatalog(wctx); err != nil && wctx.Err() == nil {
			p.log.Error("catalog watch stopped", "error", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		p.watchDocs(wctx, client.KV())
	}()
	p.rebuild()
	if p.cfg.GatewayService != "" {
		if err := p.register(client); err != nil {
			// Routing works without it; only cluster-wide limits assume one gateway.
			p.log.Warn("could not register the gateway in the catalog", "err", err)
		}
		if p.ttlCheck {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.keepAlive(wctx)
			}()
		}
	}
	p.log.Info("gateway listening", "addr", p.Addr(), "admin", p.AdminAddr(), "agent", p.cfg.APIAddr)
	return nil
}

func (p *Proxy) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               p.serve,
		Name:                  "wolke",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		NoDefaultContentType:  true,
		ReadTimeout:           p.cfg.ClientReadTimeout,
		IdleTimeout:           p.cfg.ClientIdleTimeout,
		MaxRequestBodySize:    p.cfg.MaxRequestBodySize,
		ReadBufferSize:        16 << 10,
		CloseOnShutdown:       true,
		Logger:                fastLogger{p.log},
		ErrorHandler:          p.badRequest,
	}
}

// badRequest answers requests fasthttp could not parse, with the status the
// problem deserves.
func (p *Proxy) badRequest(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	msg := "malformed request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "request header too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			status, msg = fasthttp.StatusRequestTimeout, "request not received in time"
		}
	}
	ctx.SetConnectionClose()
	jsonError(ctx, status, msg)
}

type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

// Addr is the client-facing address the gateway listens on.
func (p *Proxy) Addr() string {
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// AdminAddr is the admin listener's address, "" if disabled.
func (p *Proxy) AdminAddr() string {
	if p.adminLn == nil {
		return ""
	}
	return p.adminLn.Addr().String()
}

// Registry holds the gateway's metrics.
func (p *Proxy) Registry() *prometheus.Registry { return p.reg }

// Reload re-reads the static configuration and applies it to every service. A bad
// file leaves the running configuration in force.
func (p *Proxy) Reload() error {
	if err := p.loadConfig(); err != nil {
		return err
	}
	p.mu.Lock()
	seen := map[string]bool{}
	for n := range p.insts {
		seen[n] = true
	}
	for n := range p.static.Static {
		seen[n] = true
	}
	for n := range p.services {
		seen[n] = true
	}
	p.mu.Unlock()
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	for _, n := range names {
		p.applyService(n)
	}
	p.rebuild()
	p.log.Info("configuration reloaded", "file", p.cfg.ConfigFile)
	return nil
}

// Shutdown stops accepting, lets in-flight requests finish (bounded by ctx), and
// stops following the catalog.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var err error
	p.shutdown.Do(func() {
		var errs []error
		p.deregister()
		for _, s := range p.servers {
			if e := s.Shutdown(ctx); e != nil && !errors.Is(e, context.Canceled) {
				errs = append(errs, e)
			}
		}
		if p.cancel != nil {
			p.cancel()
		}
		if p.watcher != nil {
			p.watcher.Close()
		}
		if p.apiKeys != nil {
			p.apiKeys.Close()
		}
		p.wg.Wait()
		if p.apiTransport != nil {
			p.apiTransport.CloseIdleConnections()
		}
		if p.access != nil {
			p.access.close()
		}
		p.mu.Lock()
		for _, s := range p.services {
			if st := s.state.Load(); st != nil {
				for _, e := range st.endpoints {
					e.retire()
				}
				if st.auth != nil {
					st.auth.Close()
				}
			}
		}
		p.mu.Unlock()
		err = errors.Join(errs...)
	})
	return err
}

// onCatalog is called by the watcher when a service's passing instances change.
func (p *Proxy) onCatalog(name string, insts []servicewatch.Instance) {
	if name == p.cfg.GatewayService && name != "" {
		p.onPeers(insts)
	}
	p.mu.Lock()
	if insts == nil { // the service left the catalog
		delete(p.insts, name)
	} else {
		p.insts[name] = insts
	}
	p.mu.Unlock()
	p.applyService(name)
	p.rebuild()
}

// applyService recomputes a service's policy and instances.
func (p *Proxy) applyService(name string) {
	p.mu.Lock()
	insts, inCatalog := p.insts[name]
	static := p.static.Static[name]
	if !inCatalog && static == nil {
		if s := p.services[name]; s != nil {
			if st := s.state.Load(); st != nil {
				for _, e := range st.endpoints {
					e.retire()
					p.metrics.forgetEndpoint(name, e.bal.Addr)
				}
				if st.auth != nil {
					st.auth.Close()
				}
			}
			delete(p.services, name)
		}
		delete(p.settings, name)
		delete(p.problems, name)
		p.mu.Unlock()
		return
	}
	for i, in := range static {
		w := in.Weight
		if w <= 0 {
			w = 1
		}
		insts = append(insts, servicewatch.Instance{
			ID: fmt.Sprintf("static-%d", i), Service: name, Node: "static", Address: in.Address, Port: in.Port, Weight: w,
		})
	}
	if len(insts) > 0 {
		p.settings[name] = serviceSettings(insts)
	}
	base := p.base
	if raw, ok := p.static.Services[name]; ok {
		_ = strictUnmarshal(raw, &base) // validated by loadConfig
	}
	if b, err := p.docPolicy(name, base); err == nil {
		base = b
	}
	pol, enabled, errs := servicePolicy(name, p.cfg.Domain, base, p.settings[name])
	p.problems[name] = nil
	for _, e := range errs {
		p.problems[name] = append(p.problems[name], e.Error())
		p.log.Warn("ignoring service setting", "error", e)
	}
	s := p.services[name]
	if s == nil {
		s = p.newService(name)
		p.services[name] = s
	}
	p.mu.Unlock()
	p.updateService(s, pol, enabled, insts)
}

// rebuild swaps in a routing table built from the current services.
func (p *Proxy) rebuild() {
	p.mu.Lock()
	for name := range p.static.Static {
		if p.services[name] == nil {
			p.mu.Unlock()
			p.applyService(name)
			p.mu.Lock()
		}
	}
	var routes []*route
	for _, s := range p.services {
		s.mu.Lock()
		if s.enabled {
			for _, spec := range s.policy.Routes {
				r := &route{spec: spec, svc: s}
				r.metrics = p.metrics.forRoute(routeName(r))
				routes = append(routes, r)
			}
		}
		s.mu.Unlock()
	}
	p.table.Store(newTable(routes))
	p.mu.Unlock()
}

// RouteInfo describes one route for the admin API.
type RouteInfo struct {
	Service     string         `json:"service"`
	Host        string         `json:"host,omitempty"`
	Prefix      string         `json:"prefix"`
	StripPrefix bool           `json:"strip_prefix"`
	Priority    int            `json:"priority"`
	LB          string         `json:"lb"`
	Breaker     string         `json:"breaker"`
	Instances   []InstanceInfo `json:"instances"`
	Problems    []string       `json:"problems,omitempty"`
}

// InstanceInfo is an instance's live state.
type InstanceInfo struct {
	ID           string    `json:"id"`
	Node         string    `json:"node"`
	Addr         string    `json:"addr"`
	Weight       int       `json:"weight"`
	Inflight     int64     `json:"inflight"`
	LatencyMS    float64   `json:"latency_ms"`
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	Ejections    int       `json:"ejections"`
}

// Routes returns the live routing table, best match first.
func (p *Proxy) Routes() []RouteInfo {
	t := p.table.Load()
	var all []*route
	hosts := make([]string, 0, len(t.byHost))
	for h := range t.byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		all = append(all, t.byHost[h]...)
	}
	all = append(all, t.any...)
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]RouteInfo, 0, len(all))
	for _, r := range all {
		st := r.svc.state.Load()
		ri := RouteInfo{
			Service: r.svc.name, Host: r.spec.Host, Prefix: r.spec.Prefix, StripPrefix: r.spec.StripPrefix,
			Priority: r.spec.Priority, LB: st.lb.Name(), Breaker: st.breaker.State().String(),
			Instances: []InstanceInfo{}, Problems: append([]string(nil), p.problems[r.svc.name]...),
		}
		if d := p.docs[r.svc.name]; d != nil && !d.status.Valid {
			ri.Problems = append(ri.Problems, fmt.Sprintf("policy document (index %d) rejected: %s", d.status.ModifyIndex, d.status.Error))
		}
		for _, e := range st.endpoints {
			ri.Instances = append(ri.Instances, InstanceInfo{
				ID: e.inst.ID, Node: e.inst.Node, Addr: e.bal.Addr, Weight: e.bal.Weight,
				Inflight: e.bal.Inflight(), LatencyMS: float64(e.bal.Latency().Microseconds()) / 1000,
				Ejected: st.outlier.Ejected(&e.host), EjectedUntil: e.host.EjectedUntil(), Ejections: e.host.Ejections(),
			})
		}
		out = append(out, ri)
	}
	return out
}

// Package httpapi serves wolke's HTTP API: Consul's /v1 paths, query parameters,
// headers, status codes and JSON shapes, so Consul's clients work unchanged.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/state"
)

// Backend is what the API needs from the agent. Implementations must be safe for
// concurrent use; every method may be called from many request goroutines.
type Backend interface {
	// Store is the local replicated state.
	Store() *state.Store
	// Apply replicates an encoded command and returns its result and log index.
	Apply(ctx context.Context, cmd []byte) (any, uint64, error)
	// ReadBarrier returns nil once the local state may answer a read in mode.
	ReadBarrier(ctx context.Context, mode Consistency) error
	// LeaderInfo says whether a leader is known and when it was last heard from.
	LeaderInfo() LeaderInfo
	// Servers returns the Raft configuration.
	Servers() ([]consensus.Server, error)
	// Self describes this agent for /v1/agent/self.
	Self() Self
	// Local reports whether this agent answers a request itself (the leader does;
	// any server does for a stale read); otherwise Forward passes it to the server
	// that must answer and copies that answer back.
	Local(write bool, mode Consistency) bool
	Forward(w http.ResponseWriter, r *http.Request)
	// CanApply reports whether Apply works from here even when Local says no: a
	// follower that passes the encoded command to the leader. A write that needs
	// nothing but Apply is then handled here, and only its command travels.
	CanApply(ctx context.Context) bool
}

// LeaderInfo feeds X-Consul-KnownLeader, X-Consul-LastContact and /v1/status/leader.
type LeaderInfo struct {
	Address     string
	Known       bool
	LastContact time.Duration
}

// Self is this agent's identity and runtime counters.
type Self struct {
	NodeName   string
	NodeID     string
	Datacenter string
	Server     bool
	Version    string
	Addr       string
	Port       int
	Stats      map[string]map[string]string
}

// Authorizer decides what a token may do. Until ACLs exist the agent allows everything,
// but handlers already ask, so adding ACLs changes no handler.
type Authorizer interface {
	KeyRead(token, key string) bool
	KeyWrite(token, key string) bool
}

// AllowAll is the authorizer used until ACLs land.
type AllowAll struct{}

// KeyRead allows every read.
func (AllowAll) KeyRead(string, string) bool { return true }

// KeyWrite allows every write.
func (AllowAll) KeyWrite(string, string) bool { return true }

// Config configures the HTTP API.
type Config struct {
	// Addr is where to listen ("127.0.0.1:8500").
	Addr string
	// MaxValueBytes bounds a KV value (Consul's kv_max_value_size, 512 KiB).
	MaxValueBytes int64
	// MaxKeyBytes bounds a key.
	MaxKeyBytes int
	// MaxConnsPerClient bounds concurrent connections from one IP; more are answered
	// 429 with Retry-After. Long-polling clients (Prometheus, consul-template) hold one
	// connection per watch, so the default is far above Consul's 200.
	MaxConnsPerClient int
	// DefaultWait and MaxWait are the blocking-query wait when none is given and the cap.
	DefaultWait time.Duration
	MaxWait     time.Duration
	// ShutdownTimeout bounds how long Shutdown waits for in-flight requests.
	ShutdownTimeout time.Duration
	// EnableDebug serves Go's profiler at /debug/pprof/ (Consul's enable_debug).
	EnableDebug bool
}

// DefaultConfig returns Consul-compatible limits.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8500",
		MaxValueBytes:     512 * 1024,
		MaxKeyBytes:       512,
		MaxConnsPerClient: 16384,
		DefaultWait:       5 * time.Minute,
		MaxWait:           10 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.MaxValueBytes <= 0 || c.MaxKeyBytes <= 0:
		return errors.New("httpapi: value and key limits must be positive")
	case c.MaxConnsPerClient <= 0:
		return errors.New("httpapi: MaxConnsPerClient must be positive")
	case c.DefaultWait <= 0 || c.MaxWait < c.DefaultWait:
		return errors.New("httpapi: need 0 < DefaultWait <= MaxWait")
	}
	return nil
}

// Server is the HTTP API server.
type Server struct {
	cfg      Config
	backend  Backend
	auth     Authorizer
	logger   *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics
	handler  http.Handler
	// fast serves HTTP/1.1 on the API listener and the requests other agents forward
	// over the server port (ServeOn); srv serves HTTP/2 (h2c) on the API listener.
	fast  *fasthttp.Server
	srv   *http.Server
	ln    net.Listener
	split *splitListener
	// shared holds computed health answers that concurrent waiters reuse.
	shared sharedResults
	// stopCh closes when Shutdown starts, ending blocking queries early so that
	// draining does not wait out their long polls.
	stopCh   chan struct{}
	stopOnce sync.Once
}

// New builds the API. registry receives the API's metrics and is served at /metrics.
func New(cfg Config, backend Backend, registry *prometheus.Registry, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if registry == nil {
		registry = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:      cfg,
		backend:  backend,
		auth:     AllowAll{},
		logger:   logger.With("component", "http"),
		registry: registry,
		stopCh:   make(chan struct{}),
	}
	m, err := newMetrics(registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.handler = s.middleware(http.HandlerFunc(s.route))
	s.fast = s.newFastServer()
	return s, nil
}

// Handler returns the API's root handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// route dispatches on the path by hand: net/http's ServeMux cleans paths and would
// redirect KV keys that contain "//" or "..", which are legal keys.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/kv/"):
		if s.kvForwarded(w, r) {
			return
		}
		s.kv(w, r, p[len("/v1/kv/"):])
	case p == "/v1/kv":
		if s.kvForwarded(w, r) {
			return
		}
		s.kv(w, r, "")
	case p == "/v1/status/leader" || p == "/v1/status/peers":
		// Any server knows; a client agent asks one.
		if s.forwardedAs(w, r, false, Stale) {
			return
		}
		if p == "/v1/status/leader" {
			s.get(w, r, s.statusLeader)
		} else {
			s.get(w, r, s.statusPeers)
		}
	case p == "/v1/agent/self":
		s.get(w, r, s.agentSelf)
	case p == "/v1/agent/services" || p == "/v1/agent/checks" || p == "/v1/agent/maintenance" ||
		strings.HasPrefix(p, "/v1/agent/service/") || strings.HasPrefix(p, "/v1/agent/check/"):
		s.agentLocal(w, r, p[len("/v1/agent/"):])
	case p == "/v1/agent/reload":
		s.agentReload(w, r)
	case p == "/v1/agent/members":
		s.get(w, r, s.agentMembers)
	case p == "/v1/agent/leave":
		s.agentLeave(w, r)
	case strings.HasPrefix(p, "/v1/agent/join/"):
		s.agentJoin(w, r, p[len("/v1/agent/join/"):])
	case strings.HasPrefix(p, "/v1/agent/force-leave/"):
		s.agentForceLeave(w, r, p[len("/v1/agent/force-leave/"):])
	case strings.HasPrefix(p, "/v1/catalog/"):
		if s.forwarded(w, r) {
			return
		}
		s.catalog(w, r, p[len("/v1/catalog/"):])
	case strings.HasPrefix(p, "/v1/health/"):
		if s.forwarded(w, r) {
			return
		}
		s.health(w, r, p[len("/v1/health/"):])
	case p == "/v1/txn":
		if s.forwarded(w, r) {
			return
		}
		s.txn(w, r)
	case strings.HasPrefix(p, "/v1/session/"):
		if s.forwarded(w, r) {
			return
		}
		s.session(w, r, p[len("/v1/session/"):])
	case p == "/v1/snapshot":
		if s.forwarded(w, r) {
			return
		}
		s.snapshot(w, r)
	case strings.HasPrefix(p, "/v1/operator/raft/"):
		if s.forwarded(w, r) {
			return
		}
		s.operatorRaft(w, r, p[len("/v1/operator/raft/"):])
	case strings.HasPrefix(p, "/v1/event/fire/"):
		s.eventFire(w, r, p[len("/v1/event/fire/"):])
	case p == "/v1/event/list":
		s.get(w, r, s.eventList)
	case p == "/v1/agent/metrics" || p == "/metrics":
		s.get(w, r, s.agentMetrics)
	case strings.HasPrefix(p, "/debug/pprof/") && s.cfg.EnableDebug:
		servePprof(w, r)
	default:
		writeError(w, notFound("Invalid URL path: not a recognized HTTP API endpoint"))
	}
}

// forwarded passes a request for replicated state to the server that must answer it,
// and reports whether it did. Reads choose by consistency mode; ?stale is answered by
// any server from its own state.
func (s *Server) forwarded(w http.ResponseWriter, r *http.Request) bool {
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	mode := Default
	if q := r.URL.RawQuery; q != "" {
		v := queryOf(r)
		if has(v, "stale") {
			mode = Stale
		} else if has(v, "consistent") {
			mode = Consistent
		}
	}
	return s.forwardedAs(w, r, write, mode)
}

// kvForwarded is forwarded for the KV endpoint, whose writes read no state before
// they apply: a follower that can pass commands to the leader handles them itself.
func (s *Server) kvForwarded(w http.ResponseWriter, r *http.Request) bool {
	if (r.Method == http.MethodPut || r.Method == http.MethodDelete) && s.backend.CanApply(r.Context()) {
		return false
	}
	return s.forwarded(w, r)
}

// forwardedAs is forwarded with the request's kind decided by the caller.
func (s *Server) forwardedAs(w http.ResponseWriter, r *http.Request, write bool, mode Consistency) bool {
	if s.backend.Local(write, mode) {
		return false
	}
	s.backend.Forward(w, r)
	return true
}

// get answers 405 to anything but GET (and HEAD).
func (s *Server) get(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r.Method, "GET")
		return
	}
	h(w, r)
}

func methodNotAllowed(w http.ResponseWriter, method string, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, &httpError{code: http.StatusMethodNotAllowed,
		reason: fmt.Sprintf("method %s not allowed", method)})
}

// Start listens and serves in the background; it returns once the listener is open.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("httpapi: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = newLimitListener(ln, s.cfg.MaxConnsPerClient, s.metrics)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	// HTTP/2 without TLS (with prior knowledge, RFC 9113 §3.3) beside HTTP/1.1: a client
	// that speaks it multiplexes its requests, blocking queries included, over one
	// connection, so a process with thousands of watches holds one connection, not
	// thousands. It is not faster: Go's HTTP/2 costs more per request than HTTP/1.1.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	s.srv.Protocols = &protocols
	s.split = newSplitListener(s.ln)
	go func() {
		if err := s.fast.Serve(s.split.h1); err != nil && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("http server stopped", "err", err)
		}
	}()
	go func() {
		if err := s.srv.Serve(s.split.h2); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("http/2 server stopped", "err", err)
		}
	}()
	s.logger.Info("HTTP API listening", "addr", s.ln.Addr().String())
	return nil
}

// ServeOn serves the API on another listener too (forwarded requests arriving over the
// server port); it returns when the listener closes.
func (s *Server) ServeOn(ln net.Listener) error {
	err := s.fast.Serve(readAheadListener{ln})
	if err == nil || errors.Is(err, net.ErrClosed) || s.stopping() {
		return nil
	}
	return err
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for in-flight requests to finish,
// until ctx ends. Blocking queries are ended early (they answer with current data).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopCh) })
	if s.split != nil {
		s.split.Close() // no new connections, of either protocol
	}
	ferr := s.fast.ShutdownWithContext(ctx)
	if s.srv == nil { // never started; ServeOn alone uses only fast
		return ferr
	}
	return errors.Join(ferr, s.srv.Shutdown(ctx))
}

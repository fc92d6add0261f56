package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Server answers DNS queries over UDP and TCP from a Catalog.
type Server struct {
	catalog Catalog
	addr    string
	domain  string // lower case, with the final dot
	logger  *slog.Logger
	metrics *metrics
	dyn     atomic.Pointer[dynamicConfig]

	// ctx is cancelled by Shutdown; catalog reads and forwarded queries use it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	bound    string
	servers  []*dns.Server
	serveErr chan error
}

// dynamicConfig is the reloadable configuration with the recursors resolved to
// host:port; a query loads it once and uses that copy throughout.
type dynamicConfig struct {
	ReloadableConfig
	recursors []string
}

func newDynamicConfig(rc ReloadableConfig) (*dynamicConfig, error) {
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	d := &dynamicConfig{ReloadableConfig: rc}
	d.Recursors = append([]string(nil), rc.Recursors...)
	for _, r := range rc.Recursors {
		a, _ := recursorAddr(r) // validated
		d.recursors = append(d.recursors, a)
	}
	return d, nil
}

// New returns a server for cfg (which it copies) that reads from catalog. A nil logger
// discards logs; the metrics are registered on reg unless it is nil. Start listens.
func New(cfg Config, catalog Catalog, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if catalog == nil {
		return nil, errors.New("dns: no catalog")
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dyn, err := newDynamicConfig(cfg.ReloadableConfig)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("dns: registering metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		catalog: catalog,
		addr:    cfg.Addr,
		domain:  dns.Fqdn(strings.ToLower(cfg.Domain)),
		logger:  logger.With("component", "dns"),
		metrics: m,
		ctx:     ctx,
		cancel:  cancel,
	}
	s.dyn.Store(dyn)
	return s, nil
}

// Reload replaces the reloadable settings; queries in flight finish with the old ones.
func (s *Server) Reload(rc ReloadableConfig) error {
	d, err := newDynamicConfig(rc)
	if err != nil {
		return err
	}
	s.dyn.Store(d)
	return nil
}

// Domain is the zone the server answers, lower case with the final dot.
func (s *Server) Domain() string { return s.domain }

// Start binds the UDP and TCP listeners on the same port and serves until Shutdown.
// With port 0 it picks a port free on both. It returns once both serve.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("dns: server already started")
	}
	if s.ctx.Err() != nil {
		return errors.New("dns: server was shut down; create a new one")
	}
	pc, l, err := listen(s.addr)
	if err != nil {
		return err
	}
	s.bound = pc.LocalAddr().String()
	ready := make(chan struct{}, 2)
	notify := func() { ready <- struct{}{} }
	s.servers = []*dns.Server{
		{PacketConn: pc, Handler: s, UDPSize: dns.MaxMsgSize, NotifyStartedFunc: notify},
		// A TCP connection may carry any number of queries (miekg/dns closes it after
		// 128 by default); an idle one is closed after 8s (RFC 7766's advice).
		{Listener: l, Handler: s, NotifyStartedFunc: notify, MaxTCPQueries: -1,
			ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
			IdleTimeout: func() time.Duration { return 8 * time.Second }},
	}
	s.serveErr = make(chan error, len(s.servers))
	for _, srv := range s.servers {
		go func() { s.serveErr <- srv.ActivateAndServe() }()
	}
	for range s.servers {
		select {
		case <-ready:
		case err := <-s.serveErr:
			pc.Close()
			l.Close()
			return fmt.Errorf("dns: serving on %s: %w", s.bound, err)
		}
	}
	s.started = true
	s.logger.Info("DNS server listening", "addr", s.bound, "domain", s.domain)
	return nil
}

// listen binds UDP and TCP on addr; with port 0, on a port free for both.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: addr %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listening on udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != 0 || attempt == 10 {
			return nil, nil, fmt.Errorf("dns: listening on tcp %s: %w", net.JoinHostPort(host, strconv.Itoa(p)), err)
		}
	}
}

// Addr is the address the server listens on (UDP and TCP), once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Shutdown stops both listeners and waits for the queries in flight, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.started {
		for _, srv := range s.servers {
			if err := srv.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		for range s.servers {
			select {
			case <-s.serveErr:
			case <-ctx.Done():
				errs = append(errs, ctx.Err())
			}
		}
		s.started = false
	}
	s.cancel()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: shutdown: %w", err)
	}
	return nil
}

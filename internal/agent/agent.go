package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/dns"
	"github.com/wolke-platform/wolke/internal/eventlog"
	"github.com/wolke-platform/wolke/internal/fsm"
	"github.com/wolke-platform/wolke/internal/health"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/membership"
	"github.com/wolke-platform/wolke/internal/rpc"
	"github.com/wolke-platform/wolke/internal/state"
)

// Agent is one running wolke agent.
type Agent struct {
	cfg      Config
	logger   *slog.Logger
	nodeID   string
	store    *state.Store
	node     *consensus.Node
	http     *httpapi.Server
	registry *prometheus.Registry

	// Servers only: the server port and the Raft node. Client agents have neither.
	mux *rpc.Mux
	// forwarder passes requests to the leader (or, from a client, to a server).
	forwarder *rpc.Forwarder
	// calls passes a follower's encoded commands to the leader (applycall.go).
	calls       *rpc.CallPool
	callMetrics *callMetrics
	pool        *membership.Pool
	// events holds the user events this agent received (events.go).
	events *eventlog.Log

	leaveCh   chan struct{}
	leaveOnce sync.Once

	sessionTTL sessionTimers

	dnsServer *dns.Server

	// local services and checks, the runners of the checks.
	local  *local
	checks *health.Manager
	// configMu serialises reloads of -config-dir; loaded is what the last one defined.
	configMu sync.Mutex
	loaded   loadedConfig

	// memberChanged is signalled (lossy, buffered 1) on every gossip membership change.
	memberChanged chan struct{}

	stopCh chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	left   bool // Leave ran: Shutdown need not leave again
	leftMu sync.Mutex
}

// Interface guard: the agent is the HTTP API's backend.
var _ httpapi.Backend = (*Agent)(nil)

// New builds an agent; nothing listens until Start.
func New(cfg Config) (*Agent, error) {
	if cfg.Dev {
		cfg.Server, cfg.Bootstrap = true, true
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, logger: logger, stopCh: make(chan struct{}), memberChanged: make(chan struct{}, 1),
		leaveCh: make(chan struct{})}
	id, err := a.loadNodeID()
	if err != nil {
		return nil, err
	}
	a.nodeID = id
	if a.events, err = a.newEventLog(); err != nil {
		return nil, err
	}
	a.registry = prometheus.NewRegistry()
	a.sessionTTL.expire = a.expireSession
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return a, nil
}

// loadNodeID reads the node ID from the data dir, creating it on first start, so a
// server keeps its Raft identity across restarts.
func (a *Agent) loadNodeID() (string, error) {
	if a.cfg.DataDir == "" {
		return newUUID(), nil
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	p := filepath.Join(a.cfg.DataDir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node ID: %w", err)
	}
	id := newUUID()
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node ID: %w", err)
	}
	return id, nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Start opens the store, starts Raft (servers), the HTTP API and gossip, and joins.
// On error everything started so far is stopped again.
func (a *Agent) Start() error {
	if err := a.start(); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.shutdown(ctx)
		return err
	}
	a.logger.Info("agent started", "node", a.cfg.NodeName, "id", a.nodeID, "server", a.cfg.Server,
		"dev", a.cfg.Dev, "data_dir", a.cfg.DataDir, "http", a.http.Addr(), "serf", a.pool.LocalMember().Port)
	return nil
}

func (a *Agent) start() error {
	store, err := state.New()
	if err != nil {
		return err
	}
	a.store = store
	a.forwarder = rpc.NewForwarder(rpc.NewPool(2 * time.Second))
	a.local = newLocal()
	a.checks = health.NewManager(health.Config{EnableScriptChecks: a.cfg.EnableScriptChecks, Logger: a.logger,
		Notify: a.checkChanged, Deregister: a.deregisterCritical})

	serverPort := 0
	if a.cfg.Server {
		mux, err := rpc.Listen(a.cfg.serverAddr(), a.logger)
		if err != nil {
			return err
		}
		a.mux = mux
		a.calls = rpc.NewCallPool(2 * time.Second)
		a.callMetrics = newCallMetrics(a.registry)
		serverPort = mux.Addr().(*net.TCPAddr).Port
		advertise := &net.TCPAddr{IP: net.ParseIP(a.advertiseIP()), Port: serverPort}

		rc := a.cfg.Raft
		rc.NodeID = a.nodeID
		rc.DataDir = a.cfg.DataDir
		rc.Bootstrap = a.cfg.Bootstrap
		rc.Logger = a.logger
		var trans raft.Transport
		if a.cfg.Dev {
			trans = consensus.NewInmemTransport(advertise.String())
		} else {
			trans = consensus.NewMuxTransport(mux.RaftLayer(advertise), a.logger)
		}
		node, err := consensus.New(rc, fsm.New(store, a.logger), trans)
		if err != nil {
			return err
		}
		a.node = node
		mux.HandleCalls(a.serveCall)
	}

	api, err := httpapi.New(a.cfg.HTTP, a, a.registry, a.logger)
	if err != nil {
		return err
	}
	if err := api.Start(); err != nil {
		return err
	}
	a.http = api
	if a.mux != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := api.ServeOn(a.mux.ForwardListener()); err != nil {
				a.logger.Error("serving forwarded requests stopped", "err", err)
			}
		}()
	}

	if a.cfg.DNS.Addr != "" {
		srv, err := dns.New(a.cfg.DNS, dnsCatalog{a}, a.logger, a.registry)
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		a.dnsServer = srv
	}

	mc := membership.DefaultConfig()
	mc.NodeName = a.cfg.NodeName
	mc.BindAddr = a.cfg.BindAddr
	mc.BindPort = a.cfg.SerfPort
	mc.AdvertiseAddr = a.cfg.AdvertiseAddr
	mc.DataDir = a.cfg.DataDir
	mc.RetryJoin = a.cfg.RetryJoin
	mc.RetryInterval = a.cfg.RetryInterval
	mc.Logger = a.logger
	mc.Registerer = a.registry
	mc.Tags = a.tags(serverPort)
	if a.cfg.Gossip != nil {
		a.cfg.Gossip(&mc)
	}
	pool, err := membership.New(mc)
	if err != nil {
		return err
	}
	a.pool = pool
	if len(a.cfg.Join) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := pool.Join(ctx, a.cfg.Join)
		cancel()
		if err != nil && n == 0 {
			return fmt.Errorf("join %v: %w", a.cfg.Join, err)
		}
	}

	a.wg.Add(2)
	go a.dispatchEvents()
	go a.antiEntropy()
	if err := a.Reload(); err != nil {
		return err
	}
	if a.node != nil {
		a.wg.Add(3)
		go a.reapTombstones()
		go a.serverDuties()
		go a.watchBoundChecks()
	}
	return nil
}

// dispatchEvents consumes the gossip pool's events, so the pool never blocks, and
// passes on what the agent's parts react to.
func (a *Agent) dispatchEvents() {
	defer a.wg.Done()
	for {
		select {
		case <-a.stopCh:
			return
		case e, ok := <-a.pool.Events():
			if !ok {
				return
			}
			if e.Type != membership.EventUser {
				select {
				case a.memberChanged <- struct{}{}:
				default:
				}
			} else {
				a.receiveEvent(e.User)
			}
		}
	}
}

// tags are this agent's gossip metadata, in Consul's tag names.
func (a *Agent) tags(serverPort int) map[string]string {
	t := map[string]string{
		membership.TagDatacenter: a.cfg.Datacenter,
		membership.TagID:         a.nodeID,
		membership.TagVsn:        "2",
		membership.TagBuild:      a.cfg.Version,
		membership.TagRole:       membership.RoleClient,
	}
	if a.cfg.Server {
		t[membership.TagRole] = membership.RoleServer
		t[membership.TagPort] = strconv.Itoa(serverPort)
		t[membership.TagRaftVsn] = "3"
		if a.cfg.BootstrapExpect > 0 {
			t[membership.TagExpect] = strconv.Itoa(a.cfg.BootstrapExpect)
		}
	}
	return t
}

func (a *Agent) advertiseIP() string {
	if a.cfg.AdvertiseAddr != "" {
		return a.cfg.AdvertiseAddr
	}
	return a.cfg.BindAddr
}

// HTTPAddr is where the HTTP API listens.
func (a *Agent) HTTPAddr() string { return a.http.Addr() }

// SerfAddr is where gossip listens ("ip:port").
func (a *Agent) SerfAddr() string {
	m := a.pool.LocalMember()
	return net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
}

// Leave leaves the cluster gracefully: a leading server hands leadership on, the
// agent announces its departure by gossip (the leader then removes a server from the
// Raft configuration) and waits, bounded, until that happened.
func (a *Agent) Leave(ctx context.Context) error {
	a.leftMu.Lock()
	defer a.leftMu.Unlock()
	if a.left {
		return nil
	}
	a.left = true
	if a.node != nil && a.node.IsLeader() {
		if servers, err := a.node.Servers(); err == nil && len(servers) > 1 {
			if err := a.node.TransferLeadership(); err != nil {
				a.logger.Warn("leadership transfer before leave failed", "err", err)
			}
		}
	}
	if a.pool == nil {
		return nil
	}
	if err := a.pool.Leave(ctx); err != nil {
		return fmt.Errorf("leave gossip pool: %w", err)
	}
	if a.node == nil {
		return nil
	}
	// Wait until the leader has removed us, so stopping now cannot cost the cluster
	// its quorum arithmetic.
	for ctx.Err() == nil {
		servers, err := a.node.Servers()
		if err != nil || !containsID(servers, a.nodeID) || len(servers) <= 1 {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	a.logger.Warn("left gossip, but the leader did not remove this server from Raft in time")
	return nil
}

func containsID(servers []consensus.Server, id string) bool {
	for _, s := range servers {
		if s.ID == id {
			return true
		}
	}
	return false
}

// Shutdown stops the agent without leaving (a restart rejoins where it was): it drains
// the HTTP API (in-flight requests finish, blocking queries answer at once), stops
// gossip, then Raft, which flushes and closes the log.
func (a *Agent) Shutdown(ctx context.Context) error {
	var err error
	a.once.Do(func() { err = a.shutdown(ctx) })
	return err
}

func (a *Agent) shutdown(ctx context.Context) error {
	var err error
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	select {
	case <-a.stopCh:
	default:
		close(a.stopCh)
	}
	if a.http != nil {
		if e := a.http.Shutdown(ctx); e != nil {
			keep(fmt.Errorf("drain HTTP: %w", e))
		}
	}
	if a.dnsServer != nil {
		keep(a.dnsServer.Shutdown(ctx))
	}
	if a.pool != nil {
		keep(a.pool.Shutdown())
	}
	a.wg.Wait()
	if a.forwarder != nil {
		a.forwarder.Close()
	}
	if a.calls != nil {
		a.calls.Close()
	}
	// Raft before the server port: Raft then knows the port's listener closing is its
	// own shutdown, not an error.
	if a.node != nil {
		keep(a.node.Shutdown())
	}
	if a.mux != nil {
		keep(a.mux.Close())
	}
	a.sessionTTL.stopAll()
	if a.checks != nil {
		a.checks.Shutdown()
	}
	a.logger.Info("agent stopped")
	return err
}

// Store implements httpapi.Backend.
func (a *Agent) Store() *state.Store { return a.store }

// waitLeader holds a request while an election runs, up to LeaderWait, the way
// Consul holds RPCs instead of failing them at once.
func (a *Agent) waitLeader(ctx context.Context) error {
	if a.node.ReadReady() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaderWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return consensus.ErrNoLeader
		case <-a.stopCh:
			return consensus.ErrShutdown
		case <-t.C:
			if a.node.ReadReady() {
				return nil
			}
		}
	}
}

// ReadBarrier implements httpapi.Backend.
func (a *Agent) ReadBarrier(ctx context.Context, mode httpapi.Consistency) error {
	if a.node == nil {
		return consensus.ErrNoLeader
	}
	switch mode {
	case httpapi.Stale:
		return nil
	case httpapi.Consistent:
		if err := a.waitLeader(ctx); err != nil {
			return err
		}
		return a.node.VerifyLeader(ctx)
	default:
		if err := a.waitLeader(ctx); err != nil {
			return err
		}
		return a.node.LeaderRead(ctx)
	}
}

// LeaderInfo implements httpapi.Backend.
func (a *Agent) LeaderInfo() httpapi.LeaderInfo {
	if a.node == nil {
		return httpapi.LeaderInfo{}
	}
	addr, _ := a.node.Leader()
	li := httpapi.LeaderInfo{Address: addr, Known: addr != ""}
	if lc := a.node.LastContact(); !lc.IsZero() {
		li.LastContact = time.Since(lc)
	}
	return li
}

// Servers implements httpapi.Backend.
func (a *Agent) Servers() ([]consensus.Server, error) {
	if a.node == nil {
		return nil, consensus.ErrNoLeader
	}
	return a.node.Servers()
}

// Self implements httpapi.Backend.
func (a *Agent) Self() httpapi.Self {
	return httpapi.Self{
		NodeName:   a.cfg.NodeName,
		NodeID:     a.nodeID,
		Datacenter: a.cfg.Datacenter,
		Server:     a.cfg.Server,
		Version:    a.cfg.Version,
		Addr:       a.advertiseIP(),
		Port:       int(a.pool.LocalMember().Port),
		Stats:      a.stats(),
	}
}

func (a *Agent) stats() map[string]map[string]string {
	st := map[string]map[string]string{}
	if a.node != nil {
		st["raft"] = a.node.Stats()
	}
	if a.pool != nil {
		st["serf_lan"] = a.pool.Stats()
	}
	return st
}

// reapTombstones forgets KV deletions older than TombstoneTTL. It samples the applied
// index every minute; once a sample is older than the TTL, the leader replicates a
// reap up to it. Followers do nothing: the reap travels through the log.
func (a *Agent) reapTombstones() {
	defer a.wg.Done()
	type sample struct {
		at  time.Time
		idx uint64
	}
	var samples []sample
	var reaped uint64
	interval := min(time.Minute, a.cfg.TombstoneTTL/4)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stopCh:
			return
		case now := <-t.C:
			samples = append(samples, sample{now, a.node.AppliedIndex()})
			var upTo uint64
			for len(samples) > 0 && now.Sub(samples[0].at) >= a.cfg.TombstoneTTL {
				upTo = samples[0].idx
				samples = samples[1:]
			}
			if upTo <= reaped || !a.node.ReadReady() {
				continue
			}
			cmd, err := command.Encode(command.TombstoneReap, &command.TombstoneReapRequest{UpTo: upTo})
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, _, err := a.node.Apply(ctx, cmd); err != nil {
				a.logger.Warn("tombstone reap failed", "err", err)
			} else {
				reaped = upTo
			}
			cancel()
		}
	}
}

package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/fsm"
	"github.com/wolke-platform/wolke/internal/httpapi"
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

	stopCh chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
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
	a := &Agent{cfg: cfg, logger: logger, stopCh: make(chan struct{})}
	id, err := a.loadNodeID()
	if err != nil {
		return nil, err
	}
	a.nodeID = id
	a.registry = prometheus.NewRegistry()
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

// Start opens the store, starts Raft, then the HTTP API.
func (a *Agent) Start() error {
	store, err := state.New()
	if err != nil {
		return err
	}
	a.store = store

	rc := a.cfg.Raft
	rc.NodeID = a.nodeID
	rc.DataDir = a.cfg.DataDir
	rc.Bootstrap = a.cfg.Bootstrap
	rc.Logger = a.logger
	var trans raft.Transport
	if a.cfg.Dev {
		trans = consensus.NewInmemTransport(a.cfg.serverAddr())
	} else {
		adv := ""
		if a.cfg.AdvertiseAddr != "" {
			adv = strings.Replace(a.cfg.serverAddr(), a.cfg.BindAddr, a.cfg.AdvertiseAddr, 1)
		}
		t, err := consensus.NewTCPTransport(a.cfg.serverAddr(), adv, a.logger)
		if err != nil {
			return err
		}
		trans = t
	}
	node, err := consensus.New(rc, fsm.New(store, a.logger), trans)
	if err != nil {
		return err
	}
	a.node = node

	api, err := httpapi.New(a.cfg.HTTP, a, a.registry, a.logger)
	if err != nil {
		a.node.Shutdown()
		return err
	}
	if err := api.Start(); err != nil {
		a.node.Shutdown()
		return err
	}
	a.http = api
	a.wg.Add(1)
	go a.reapTombstones()
	a.logger.Info("agent started", "node", a.cfg.NodeName, "id", a.nodeID, "dev", a.cfg.Dev,
		"data_dir", a.cfg.DataDir, "http", api.Addr())
	return nil
}

// HTTPAddr is where the HTTP API listens.
func (a *Agent) HTTPAddr() string { return a.http.Addr() }

// Shutdown drains the HTTP API (in-flight requests finish, blocking queries answer at
// once), then stops Raft, which flushes and closes the log.
func (a *Agent) Shutdown(ctx context.Context) error {
	var err error
	a.once.Do(func() {
		close(a.stopCh)
		if a.http != nil {
			if e := a.http.Shutdown(ctx); e != nil {
				err = fmt.Errorf("drain HTTP: %w", e)
			}
		}
		a.wg.Wait()
		if a.node != nil {
			if e := a.node.Shutdown(); e != nil && err == nil {
				err = e
			}
		}
		a.logger.Info("agent stopped")
	})
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

// Apply implements httpapi.Backend.
func (a *Agent) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	if err := a.waitLeader(ctx); err != nil {
		return nil, 0, err
	}
	return a.node.Apply(ctx, cmd)
}

// ReadBarrier implements httpapi.Backend.
func (a *Agent) ReadBarrier(ctx context.Context, mode httpapi.Consistency) error {
	switch mode {
	case httpapi.Stale:
		return nil
	case httpapi.Consistent:
		if err := a.waitLeader(ctx); err != nil {
			return err
		}
		return a.node.VerifyLeader(ctx)
	default:
		return a.waitLeader(ctx)
	}
}

// LeaderInfo implements httpapi.Backend.
func (a *Agent) LeaderInfo() httpapi.LeaderInfo {
	addr, _ := a.node.Leader()
	li := httpapi.LeaderInfo{Address: addr, Known: addr != ""}
	if lc := a.node.LastContact(); !lc.IsZero() {
		li.LastContact = time.Since(lc)
	}
	return li
}

// Servers implements httpapi.Backend.
func (a *Agent) Servers() ([]consensus.Server, error) { return a.node.Servers() }

// Self implements httpapi.Backend.
func (a *Agent) Self() httpapi.Self {
	return httpapi.Self{
		NodeName:   a.cfg.NodeName,
		NodeID:     a.nodeID,
		Datacenter: a.cfg.Datacenter,
		Server:     a.cfg.Server,
		Version:    a.cfg.Version,
		Addr:       a.cfg.BindAddr,
		Port:       a.cfg.ServerPort,
		Stats:      map[string]map[string]string{"raft": a.node.Stats()},
	}
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

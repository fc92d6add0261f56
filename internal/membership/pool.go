package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// ErrUnknownMember means no member of that name is known (ForceLeave).
var ErrUnknownMember = errors.New("membership: no member with that name")

// Pool is this agent's membership in the LAN gossip pool. Its methods are safe for
// concurrent use.
type Pool struct {
	cfg    Config
	logger *slog.Logger
	serf   *serf.Serf
	guard  *nameGuard

	serfEvents  chan serf.Event
	events      chan Event
	dropped     atomic.Uint64
	retryResult chan error
	metrics     *collector

	joinMu   sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closing  atomic.Bool
	shutOnce sync.Once
	shutErr  error
}

// New validates cfg, starts gossip (TCP and UDP listeners on BindAddr:BindPort) and,
// when cfg.RetryJoin is set, a background retry-join. With cfg.DataDir, a snapshot
// left by a previous run makes it rejoin the members it knew. New copies cfg.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.Logger
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	cfg.Tags = maps(cfg.Tags)
	cfg.RetryJoin = slices.Clone(cfg.RetryJoin)
	p := &Pool{
		cfg:         cfg,
		logger:      base.With("component", "membership"),
		serfEvents:  make(chan serf.Event, cfg.EventBuffer),
		events:      make(chan Event, cfg.EventBuffer),
		retryResult: make(chan error, 1),
	}
	p.guard = &nameGuard{name: cfg.NodeName, logger: p.logger}

	ml := memberlist.DefaultLANConfig()
	if cfg.Memberlist != nil {
		c := *cfg.Memberlist
		ml = &c
	}
	ml.BindAddr = cfg.BindAddr
	ml.BindPort = cfg.BindPort
	ml.AdvertiseAddr = cfg.AdvertiseAddr
	ml.AdvertisePort = cfg.AdvertisePort
	if ml.AdvertisePort == 0 {
		ml.AdvertisePort = cfg.BindPort
	}
	ml.Logger = stdLogger(base)
	ml.LogOutput = nil
	ml.Merge = p.guard
	if ml.DeadNodeReclaimTime == 0 {
		ml.DeadNodeReclaimTime = 30 * time.Second
	}

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = maps(cfg.Tags)
	sc.EventCh = p.serfEvents
	sc.MemberlistConfig = ml
	sc.Logger = stdLogger(base)
	sc.LogOutput = nil
	sc.LeavePropagateDelay = cfg.LeavePropagateDelay
	sc.ReconnectTimeout = cfg.ReconnectTimeout
	sc.TombstoneTimeout = cfg.TombstoneTimeout
	sc.RejoinAfterLeave = cfg.RejoinAfterLeave
	sc.EnableNameConflictResolution = true
	if cfg.DataDir != "" {
		dir := filepath.Join(cfg.DataDir, "serf")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("membership: snapshot directory: %w", err)
		}
		sc.SnapshotPath = filepath.Join(dir, "local.snapshot")
	}

	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s: %w",
			net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	p.serf = s
	p.guard.ml.Store(s.Memberlist())
	local := s.LocalMember()
	p.logger.Info("gossip started", "node", cfg.NodeName,
		"addr", net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port))),
		"snapshot", sc.SnapshotPath)

	if cfg.Registerer != nil {
		p.metrics = newCollector(p)
		if err := cfg.Registerer.Register(p.metrics); err != nil {
			_ = s.Shutdown()
			return nil, fmt.Errorf("membership: register metrics: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go p.run()
	if len(cfg.RetryJoin) > 0 {
		p.wg.Add(1)
		go p.retryJoin(ctx)
	} else {
		close(p.retryResult)
	}
	return p, nil
}

// run moves serf's events to the Events channel, never blocking serf: when the
// consumer lags, events are dropped and counted.
func (p *Pool) run() {
	defer p.wg.Done()
	defer close(p.events)
	stopped := p.serf.ShutdownCh()
	for {
		select {
		case e := <-p.serfEvents:
			p.deliver(e)
		case <-stopped:
			if !p.closing.Load() {
				p.logger.Error("gossip stopped by itself: another node claims this node's name and the pool voted for it; restart with a unique -node name",
					"node", p.cfg.NodeName)
			}
			// Let serf's forwarders finish a send they may be in, then stop.
			idle := time.NewTimer(50 * time.Millisecond)
			defer idle.Stop()
			for {
				select {
				case e := <-p.serfEvents:
					p.deliver(e)
				case <-idle.C:
					return
				}
			}
		}
	}
}

func (p *Pool) deliver(e serf.Event) {
	for _, ev := range fromSerfEvent(e) {
		select {
		case p.events <- ev:
		default:
			if p.dropped.Add(1) == 1 {
				p.logger.Warn("event consumer is behind; dropping membership events (reconcile from Members)",
					"buffer", cap(p.events))
			}
		}
	}
}

// Events returns the channel of membership changes and user events, in the order serf
// saw them. It is bounded: a consumer that falls behind loses events (counted in
// Stats()["events_dropped"]), so consumers reconcile from Members() as the package
// documentation describes. It is closed once gossip has stopped.
func (p *Pool) Events() <-chan Event { return p.events }

// RetryJoinResult delivers the outcome of the background retry-join once and is then
// closed: nil when a join succeeded, an error wrapping ErrRetryJoinExhausted (or
// ErrNameConflict) when it gave up. It is closed without a value when there was no
// RetryJoin or the pool shut down first.
func (p *Pool) RetryJoinResult() <-chan error { return p.retryResult }

// Join contacts the members at addrs ("ip", "ip:port" or "host:port"; port 8301 when
// missing) and merges their view of the pool, returning how many it reached. It fails
// only if none was reached, with an error wrapping ErrNameConflict if the pool already
// has an alive member of this node's name. If ctx ends first, Join returns ctx.Err()
// and the attempt finishes in the background (bounded by memberlist's TCPTimeout per
// address).
func (p *Pool) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("membership: no address to join")
	}
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		n, err := joinAddr(a)
		if err != nil {
			return 0, err
		}
		norm = append(norm, n)
	}
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p.joinMu.Lock()
		defer p.joinMu.Unlock()
		p.guard.take()
		n, err := p.serf.Join(norm, true)
		if err != nil {
			if c := p.guard.take(); c != nil && n == 0 {
				err = c
			} else {
				err = fmt.Errorf("membership: join %s: %w", strings.Join(norm, ", "), err)
			}
		}
		ch <- result{n, err}
	}()
	select {
	case r := <-ch:
		if r.err == nil {
			p.logger.Info("joined", "addrs", norm, "reached", r.n)
		}
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Members returns every member this node knows, whatever its status (alive, leaving,
// left, failed), sorted by name. Failed and left members stay until reaped.
func (p *Pool) Members() []Member {
	sm := p.serf.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		out = append(out, fromSerf(m))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LocalMember returns this node as the pool sees it (with the port actually bound).
func (p *Pool) LocalMember() Member { return fromSerf(p.serf.LocalMember()) }

// NumAlive returns how many members, this one included, are alive.
func (p *Pool) NumAlive() int {
	n := 0
	for _, m := range p.serf.Members() {
		if m.Status == serf.StatusAlive {
			n++
		}
	}
	return n
}

// Leave leaves the pool gracefully: it broadcasts the leave, waits for the broadcast to
// go out (at most 5 s twice) and then Config.LeavePropagateDelay, so that others mark
// this node left rather than failed. Call Shutdown afterwards. If ctx ends first,
// Leave returns ctx.Err() and the leave goes on in the background.
func (p *Pool) Leave(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.serf.Leave() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("membership: leave: %w", err)
		}
		p.logger.Info("left the pool", "node", p.cfg.NodeName)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ForceLeave moves a failed member to left now, stopping reconnection attempts,
// instead of waiting for ReconnectTimeout; with prune it also forgets the member at
// once. An alive member refutes it and stays alive. It fails with ErrUnknownMember
// for a name nobody uses. The request is ordered by serf's Lamport clock: members that
// heard newer news about the node than this one had ignore it, so a force-leave that
// did not take effect may be repeated (as with Consul).
func (p *Pool) ForceLeave(node string, prune bool) error {
	known := false
	for _, m := range p.serf.Members() {
		if m.Name == node {
			known = true
			break
		}
	}
	if !known {
		return fmt.Errorf("%w: %q", ErrUnknownMember, node)
	}
	var err error
	if prune {
		err = p.serf.RemoveFailedNodePrune(node)
	} else {
		err = p.serf.RemoveFailedNode(node)
	}
	if err != nil {
		return fmt.Errorf("membership: force-leave %q: %w", node, err)
	}
	p.logger.Info("force-left member", "member", node, "prune", prune)
	return nil
}

// SetTags replaces this node's tags and gossips them (others get EventMemberUpdate).
func (p *Pool) SetTags(tags map[string]string) error {
	if err := p.serf.SetTags(maps(tags)); err != nil {
		return fmt.Errorf("membership: set tags: %w", err)
	}
	return nil
}

// UserEvent broadcasts a named user event to every member (Consul's /v1/event/fire).
// With coalesce, members that see several events of the same name in a short time may
// deliver only the newest. Name and payload together are limited to 512 bytes.
func (p *Pool) UserEvent(name string, payload []byte, coalesce bool) error {
	if err := p.serf.UserEvent(name, payload, coalesce); err != nil {
		return fmt.Errorf("membership: user event %q: %w", name, err)
	}
	return nil
}

// Stats returns serf's counters (members, failed, left, health_score, member_time,
// event_time, query_time, intent_queue, event_queue, query_queue, encrypted,
// coordinate_resets: what Consul shows as serf_lan in /v1/agent/self) plus
// events_dropped.
func (p *Pool) Stats() map[string]string {
	st := p.serf.Stats()
	st["events_dropped"] = strconv.FormatUint(p.dropped.Load(), 10)
	return st
}

// Shutdown stops gossip and the background work without telling anyone: the others
// will mark this node failed (call Leave first for a graceful stop). It is safe to
// call more than once; later calls return the first result.
func (p *Pool) Shutdown() error {
	p.shutOnce.Do(func() {
		p.closing.Store(true)
		p.cancel()
		if err := p.serf.Shutdown(); err != nil {
			p.shutErr = fmt.Errorf("membership: shutdown: %w", err)
		}
		p.wg.Wait()
		if p.metrics != nil {
			p.cfg.Registerer.Unregister(p.metrics)
		}
		p.logger.Info("gossip stopped", "node", p.cfg.NodeName)
	})
	return p.shutErr
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Package consensus runs the Raft node that replicates wolke's state: its storage (a
// raft-boltdb log and file snapshots, or memory in dev mode), its transport, and the
// calls the rest of the agent makes: apply a command, confirm leadership for a
// linearizable read, ask who leads.
package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Errors callers translate to the wire.
var (
	// ErrNotLeader: this server is not the leader (another one may be).
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrNoLeader: no leader is known, e.g. during an election.
	ErrNoLeader = errors.New("consensus: no cluster leader")
	// ErrTimeout: the write could not be queued in time.
	ErrTimeout = errors.New("consensus: timed out")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("consensus: shutting down")
)

// Node is one Raft server.
type Node struct {
	cfg    Config
	raft   *raft.Raft
	trans  raft.Transport
	closer []io.Closer
	logger *slog.Logger

	// readReady is true once this node leads and has applied every entry committed
	// before its term (its first Barrier). Until then its state may be behind what an
	// earlier leader acknowledged, so it must not serve leader reads (Consul #2644).
	readReady     atomic.Bool
	leaderChanges chan bool
	// leaseUntil is when the leader read lease ends, as nanoseconds since epoch on the
	// monotonic clock (see LeaderRead).
	epoch      time.Time
	leaseUntil atomic.Int64
	stopCh     chan struct{}
	wg         sync.WaitGroup
}

// New starts a Raft node with the given state machine and transport. It takes
// ownership of trans and closes it on Shutdown.
func New(cfg Config, fsm raft.FSM, trans raft.Transport) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, trans: trans, logger: logger.With("component", "consensus"),
		stopCh: make(chan struct{}), leaderChanges: make(chan bool, 1), epoch: time.Now()}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hclogFor(logger, "raft")

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("consensus: create %s: %w", dir, err)
		}
		// A snapshot being written when the process died stays behind as "<id>.tmp";
		// raft ignores such directories but never deletes them.
		if tmps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*.tmp")); len(tmps) > 0 {
			for _, t := range tmps {
				os.RemoveAll(t)
			}
			n.logger.Info("removed unfinished snapshots", "count", len(tmps))
		}
		store, err := openLogStore(dir, cfg.LogStore, n.logger)
		if err != nil {
			return nil, err
		}
		n.closer = append(n.closer, store)
		fss, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hclogFor(logger, "snapshot"))
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("consensus: open snapshot store: %w", err)
		}
		cache, err := raft.NewLogCache(cfg.MaxAppendEntries*2, store)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("consensus: log cache: %w", err)
		}
		logs, stable, snaps = cache, store, fss
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("consensus: inspect state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil {
				n.closeStores()
				return nil, fmt.Errorf("consensus: bootstrap: %w", err)
			}
		}
	}

	r, err := raft.NewRaft(rc, fsm, logs, stable, snaps, trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("consensus: start raft: %w", err)
	}
	n.raft = r
	n.wg.Add(1)
	go n.watchLeadership()
	return n, nil
}

func (n *Node) closeStores() {
	for _, c := range n.closer {
		c.Close()
	}
}

// watchLeadership keeps readReady true only while this node leads and has caught up.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.stopCh:
			return
		case leader := <-ch:
			wasReady := n.readReady.Swap(false)
			n.leaseUntil.Store(0)
			if !leader {
				n.logger.Info("lost leadership")
				if wasReady {
					n.notifyLeader(false)
				}
				continue
			}
			// Retry the barrier until it succeeds or leadership changes again.
			for {
				err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
				if err == nil {
					break
				}
				if n.raft.State() != raft.Leader {
					break
				}
				n.logger.Warn("leader barrier failed; retrying", "err", err)
				select {
				case <-n.stopCh:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			if n.raft.State() == raft.Leader {
				n.readReady.Store(true)
				n.logger.Info("became leader", "term", n.raft.Stats()["term"])
				n.notifyLeader(true)
			}
		}
	}
}

// notifyLeader replaces any unread value: only the latest state matters.
func (n *Node) notifyLeader(v bool) {
	select {
	case <-n.leaderChanges:
	default:
	}
	select {
	case n.leaderChanges <- v:
	default:
	}
}

// Apply replicates a command and returns the state machine's result for it and the
// log index it was applied at. It returns once the entry is committed (durable on a
// quorum) and applied locally.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
		if timeout <= 0 {
			return nil, 0, ErrTimeout
		}
	}
	f := n.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return nil, 0, n.translate(err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, f.Index(), err
	}
	return resp, f.Index(), nil
}

// VerifyLeader confirms with a quorum that this node still leads, for a linearizable
// read: any write acknowledged before the call is then visible locally.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if !n.readReady.Load() {
		return n.notLeaderErr()
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.translate(err)
	}
	return ctx.Err()
}

// LeaderRead returns nil when this leader may answer a read from its own state so that
// the read sees every write acknowledged before it began. A leader that was deposed
// while it was paused or cut off still believes it leads for a while, so believing is
// not enough: the leader must have confirmed its leadership with a quorum less than a
// lease ago, counted from when that confirmation started. No other leader can be
// elected within the lease, because followers that acknowledged the confirmation wait
// at least HeartbeatTimeout before they campaign; the lease is half of that, leaving
// room for clocks that run at slightly different rates. Reads within a lease cost
// nothing; after it, one VerifyLeader round (shared by all concurrent reads, Raft
// batches them into one heartbeat) renews it.
func (n *Node) LeaderRead(ctx context.Context) error {
	if !n.readReady.Load() {
		return n.notLeaderErr()
	}
	if int64(time.Since(n.epoch)) < n.leaseUntil.Load() {
		return nil
	}
	start := time.Since(n.epoch)
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.translate(err)
	}
	until := int64(start + n.cfg.HeartbeatTimeout/2)
	for {
		cur := n.leaseUntil.Load()
		if cur >= until || n.leaseUntil.CompareAndSwap(cur, until) {
			break
		}
	}
	return ctx.Err()
}

// ReadReady reports whether this node leads and has applied everything committed
// before its term, so a leader read needs no quorum round.
func (n *Node) ReadReady() bool { return n.readReady.Load() }

// IsLeader reports whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's Raft address and ID, empty when none is known.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// LastContact is when a follower last heard from the leader; zero on the leader.
func (n *Node) LastContact() time.Time {
	if n.IsLeader() {
		return time.Time{}
	}
	return n.raft.LastContact()
}

// Server is one member of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Servers returns the current Raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.translate(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Stats returns Raft's own counters (term, last_log_index, ...).
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// AppliedIndex is the last log index applied to the state machine.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Snapshot takes a Raft snapshot now (compacting the log).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("consensus: snapshot: %w", err)
	}
	return nil
}

// Shutdown stops the node; it is safe to call more than once.
func (n *Node) Shutdown() error {
	select {
	case <-n.stopCh:
		return nil
	default:
	}
	close(n.stopCh)
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	if c, ok := n.trans.(io.Closer); ok {
		c.Close()
	}
	n.closeStores()
	if err != nil {
		return fmt.Errorf("consensus: shutdown: %w", err)
	}
	return nil
}

func (n *Node) notLeaderErr() error {
	if addr, _ := n.Leader(); addr == "" {
		return ErrNoLeader
	}
	return ErrNotLeader
}

func (n *Node) translate(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", n.notLeaderErr(), err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return err
}

package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Raft node. One canonical struct; DefaultConfig is its only source
// of defaults.
type Config struct {
	// NodeID is the Raft server ID; it must stay the same across restarts of a server.
	NodeID string

	// DataDir holds the Raft log (fsync on every append batch) and the snapshots.
	// Empty keeps everything in memory: dev mode, nothing survives a restart.
	DataDir string

	// LogStore is the Raft log's engine: LogSegments (wolke's append-only segment
	// files, one write and one fsync per batch; the default) or LogBoltDB (raft-boltdb,
	// Consul's). A data dir that already holds one keeps it, whatever this says.
	LogStore string

	// Bootstrap forms a one-server cluster when the node has no Raft state yet. It is a
	// no-op on restart, so it is safe to keep on the command line.
	Bootstrap bool

	// HeartbeatTimeout and ElectionTimeout bound how long followers wait for a leader
	// before starting an election; LeaderLeaseTimeout is how long a leader stays leader
	// without hearing from a quorum. Lower values fail over faster and elect spuriously
	// more often on a loaded machine.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration

	// MaxAppendEntries is the most log entries the leader writes (one fsync) and sends
	// in one batch; concurrent writers share a batch, which is where write throughput
	// comes from.
	MaxAppendEntries int

	// SnapshotThreshold is how many log entries since the last snapshot trigger the next
	// one (checked every SnapshotInterval); TrailingLogs entries are kept after it so
	// slow followers can catch up without a full snapshot. Together they bound the size
	// of the data dir.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotRetain is how many snapshots stay on disk.
	SnapshotRetain int

	// ApplyTimeout bounds how long a write waits to enter the leader's queue.
	ApplyTimeout time.Duration

	Logger *slog.Logger
}

// DefaultConfig returns settings for a server on a LAN. Timeouts are half of Raft's
// defaults: loopback and LAN round trips are well under a millisecond, and a faster
// failover matters more than the occasional extra election on a busy machine.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		MaxAppendEntries:   256,
		SnapshotThreshold:  16384,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		ApplyTimeout:       5 * time.Second,
		LogStore:           LogSegments,
	}
}

// The Raft log engines.
const (
	LogSegments = "segments"
	LogBoltDB   = "boltdb"
)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("consensus: NodeID is required")
	case c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond:
		return errors.New("consensus: heartbeat and election timeouts must be at least 5ms")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return errors.New("consensus: leader lease timeout must not exceed the heartbeat timeout")
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("consensus: MaxAppendEntries %d out of range 1..1024", c.MaxAppendEntries)
	case c.SnapshotThreshold < 1:
		return errors.New("consensus: SnapshotThreshold must be positive")
	case c.SnapshotInterval < 10*time.Millisecond:
		return errors.New("consensus: SnapshotInterval must be at least 10ms")
	case c.SnapshotRetain < 1:
		return errors.New("consensus: SnapshotRetain must be at least 1")
	case c.LogStore != LogSegments && c.LogStore != LogBoltDB:
		return fmt.Errorf("consensus: log store %q is neither %q nor %q", c.LogStore, LogSegments, LogBoltDB)
	}
	return nil
}

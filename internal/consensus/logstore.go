package consensus

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// logStore is the durable Raft log plus Raft's small stable store (term, vote).
//
// It is raft-boltdb, as in Consul: a B+tree file that fsyncs every append batch (twice:
// data, then the meta page). raft-wal, an append-only log with one fsync per batch, was
// tried and dropped: its v0.4.0 (the newest available) seals a segment without its
// index when Raft truncates an uncommitted log tail, and the server then cannot restart
// (hashicorp/raft-wal#31; test/e2e TestRestartAfterLogSuffixTruncation).
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

func openLogStore(dir string) (logStore, error) {
	if _, err := os.Stat(filepath.Join(dir, "wal")); err == nil {
		return nil, fmt.Errorf("consensus: %s holds a raft-wal log, which this version does not read", dir)
	}
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("consensus: open log store: %w", err)
	}
	return b, nil
}

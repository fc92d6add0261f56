package consensus

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// walStore closes raft-wal's metadata database too: WAL.Close (v0.4.0) leaves it
// open, and its file lock would block the next open of the same data dir in this
// process forever.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (s *walStore) Close() error {
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// logStore is the durable Raft log plus Raft's small stable store (term, vote).
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// openLogStore opens the configured engine under dir. An existing data dir keeps its
// engine: switching would hide the existing log and lose acknowledged writes, so a
// mismatch is an error rather than a fresh start.
func openLogStore(cfg Config, dir string, logger *slog.Logger) (logStore, error) {
	boltPath := filepath.Join(dir, "raft.db")
	walDir := filepath.Join(dir, "wal")
	_, boltErr := os.Stat(boltPath)
	_, walErr := os.Stat(walDir)
	hasBolt, hasWAL := boltErr == nil, walErr == nil
	switch {
	case cfg.LogStore == LogStoreWAL && hasBolt:
		return nil, fmt.Errorf("consensus: %s holds a boltdb Raft log; start with the boltdb log store", dir)
	case cfg.LogStore == LogStoreBoltDB && hasWAL:
		return nil, fmt.Errorf("consensus: %s holds a wal Raft log; start with the wal log store", dir)
	}
	if cfg.LogStore == LogStoreWAL {
		if err := os.MkdirAll(walDir, 0o700); err != nil {
			return nil, fmt.Errorf("consensus: create %s: %w", walDir, err)
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(walDir, wal.WithLogger(hclogFor(logger, "raft-wal")), wal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return nil, fmt.Errorf("consensus: open wal log store: %w", err)
		}
		return &walStore{WAL: w, meta: meta}, nil
	}
	b, err := raftboltdb.New(raftboltdb.Options{Path: boltPath})
	if err != nil {
		return nil, fmt.Errorf("consensus: open boltdb log store: %w", err)
	}
	return b, nil
}

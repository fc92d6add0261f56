package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/fsm"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/snapshot"
	"github.com/wolke-platform/wolke/internal/state"
)

// Interface guards: the agent serves /v1/snapshot with the archive package's snapshots.
var (
	_ httpapi.Snapshotter   = (*Agent)(nil)
	_ httpapi.SavedSnapshot = (*snapshot.Snapshot)(nil)
)

// SaveSnapshot implements httpapi.Snapshotter. It takes a point-in-time view of the
// local store (memdb is MVCC: cheap, and writes go on meanwhile) rather than a Raft
// snapshot, and buffers its stream (in memory up to 16 MiB, then in a temporary file)
// so the archive's size and checksums are known before it is sent.
func (a *Agent) SaveSnapshot(ctx context.Context) (httpapi.SavedSnapshot, error) {
	if a.node == nil {
		return nil, consensus.ErrNoLeader
	}
	view := a.store.Snapshot()
	defer view.Close()
	var index uint64
	view.Indexes(func(ti state.TableIndex) error {
		index = max(index, ti.Index)
		return nil
	})
	meta := snapshot.Meta{Index: index, Term: a.node.Term(), Build: a.cfg.Version, Created: time.Now()}
	snap, err := snapshot.New(meta, func(w io.Writer) error { return fsm.WriteSnapshot(w, view) }, snapshot.Options{})
	if err != nil {
		return nil, err
	}
	a.logger.Info("snapshot taken", "index", index, "bytes", snap.Meta().Size)
	return snap, nil
}

// RestoreSnapshot implements httpapi.Snapshotter. Nothing reaches Raft until the whole
// archive is read, its checksums match and its state parses into a scratch store: Raft
// installs a snapshot before the state machine reads it and panics the server if the
// state machine then refuses it.
func (a *Agent) RestoreSnapshot(ctx context.Context, archive io.Reader) error {
	if a.node == nil {
		return consensus.ErrNoLeader
	}
	arc, err := snapshot.Read(archive, snapshot.Options{})
	if err != nil {
		return err
	}
	defer arc.Close()
	if err := checkState(arc.State()); err != nil {
		return err
	}
	if err := a.waitLeader(ctx); err != nil {
		return err
	}
	// A server that joined moments ago leaves a configuration change in flight, which
	// Raft commits within a few round trips; wait it out rather than fail.
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		err = a.node.Restore(ctx, arc.Meta.Index, arc.State(), arc.Meta.Size)
		if !errors.Is(err, consensus.ErrConfigChangePending) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stopCh:
			return consensus.ErrShutdown
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	a.logger.Info("snapshot restored", "id", arc.Meta.ID, "index", arc.Meta.Index, "bytes", arc.Meta.Size)
	return nil
}

// checkState parses a state stream into a scratch store, which is dropped again.
func checkState(r io.Reader) error {
	scratch, err := state.New()
	if err != nil {
		return err
	}
	if err := fsm.ReadSnapshot(r, scratch); err != nil {
		return fmt.Errorf("%w: %s: %w", snapshot.ErrCorrupt, snapshot.StateFile, err)
	}
	return nil
}

package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// ErrConfigChangePending: Raft refuses a restore while a configuration change (a server
// joining or leaving) is not yet committed. It commits within a round trip or two, so
// the caller may retry shortly.
var ErrConfigChangePending = errors.New("consensus: a configuration change is being committed")

// Restore replaces the replicated state with a state-machine snapshot through Raft: the
// leader writes it to its snapshot store and restores its FSM from it, and followers,
// finding a hole in the log, catch up by installing that snapshot. state is the FSM's
// snapshot stream, size its exact length and index the highest index it reflects;
// Raft's index moves past both index and its own last index, so every later write gets
// a higher one. Restore returns once a quorum has the restored state.
//
// Only the leader can restore. The caller must have checked that the FSM accepts the
// stream: Raft panics the server when the FSM's Restore fails.
func (n *Node) Restore(ctx context.Context, index uint64, state io.Reader, size int64) error {
	if !n.IsLeader() {
		return n.notLeaderErr()
	}
	// The timeout bounds the wait to enter Raft's queues, like Apply's; the restore
	// itself takes as long as copying the state takes.
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
		if timeout <= 0 {
			return ErrTimeout
		}
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Size: size}
	if err := n.raft.Restore(meta, state, timeout); err != nil {
		// raft has no sentinel for this refusal; its message is all there is.
		if strings.Contains(err.Error(), "cannot restore snapshot now") {
			return fmt.Errorf("%w: %v", ErrConfigChangePending, err)
		}
		return fmt.Errorf("consensus: restore: %w", n.translate(err))
	}
	return nil
}

// Term is the current Raft term, recorded in snapshot metadata.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/wolke-platform/wolke/internal/snapshot"
)

// Snapshotter is what /v1/snapshot needs; a Backend that also implements it serves
// GET (save) and PUT (restore). Both methods are called from request goroutines and
// may run concurrently with each other and with writes.
type Snapshotter interface {
	// SaveSnapshot captures a point-in-time view of this server's state. The API has
	// already made the local state fit for the request's consistency mode (the leader's
	// by default, any server's with ?stale). The caller closes the result.
	SaveSnapshot(ctx context.Context) (SavedSnapshot, error)
	// RestoreSnapshot reads a whole snapshot archive, verifies it completely and only
	// then replaces the replicated state with it on every server. An archive that is
	// not intact changes nothing and yields an error wrapping snapshot.ErrCorrupt.
	RestoreSnapshot(ctx context.Context, archive io.Reader) error
}

// SavedSnapshot is a captured snapshot, ready to be sent (*snapshot.Snapshot).
type SavedSnapshot interface {
	// Index is the highest Raft index the snapshot reflects (X-Consul-Index).
	Index() uint64
	// WriteTo writes the archive.
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// MaxRestoreBytes bounds a PUT /v1/snapshot body; larger bodies are answered 413.
const MaxRestoreBytes = 1 << 30

// snapshot serves /v1/snapshot: GET saves, PUT restores (Consul's endpoint). The router
// has already sent it to the server that must answer: the leader, or with ?stale on a
// GET this server.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	sn, ok := s.backend.(Snapshotter)
	if !ok {
		writeError(w, notFound("this agent cannot take snapshots"))
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.snapshotSave(w, r, sn)
	case http.MethodPut:
		s.snapshotRestore(w, r, sn)
	default:
		methodNotAllowed(w, r.Method, "GET", "PUT")
	}
}

func (s *Server) snapshotSave(w http.ResponseWriter, r *http.Request, sn Snapshotter) {
	opts, err := s.parseQuery(queryOf(r))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.readBarrier(r.Context(), opts.mode); err != nil {
		writeError(w, err)
		return
	}
	snap, err := sn.SaveSnapshot(r.Context())
	if err != nil {
		writeError(w, fmt.Errorf("taking a snapshot: %w", err))
		return
	}
	defer snap.Close()
	s.setMeta(w, snap.Index(), opts.mode)
	w.Header().Set("Content-Type", "application/x-gzip")
	if _, err := snap.WriteTo(w); err != nil {
		// The status is sent; break the connection so the client sees a failed
		// download rather than a short one (its checksum check would catch that too).
		s.logger.Warn("sending snapshot failed", "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) snapshotRestore(w http.ResponseWriter, r *http.Request, sn Snapshotter) {
	if r.ContentLength > MaxRestoreBytes {
		writeError(w, tooLarge("Snapshot (%d bytes) too large, max size: %d bytes", r.ContentLength, MaxRestoreBytes))
		return
	}
	body := http.MaxBytesReader(w, r.Body, MaxRestoreBytes)
	err := sn.RestoreSnapshot(r.Context(), body)
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		s.logger.Info("snapshot restored", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusOK)
		return
	case errors.As(err, &mbe):
		err = tooLarge("Snapshot too large, max size: %d bytes", mbe.Limit)
	case errors.Is(err, snapshot.ErrTooLarge):
		err = tooLarge("%s", oneLine(err.Error()))
	case errors.Is(err, snapshot.ErrCorrupt):
		err = badRequest("%s", oneLine(err.Error()))
	}
	s.logger.Warn("snapshot restore failed", "remote", r.RemoteAddr, "err", err)
	writeError(w, err)
}

// oneLine keeps an error from spreading over lines of the answer.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

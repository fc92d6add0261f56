package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/state"
)

// httpError is an error with the status code and one-line reason the client sees.
type httpError struct {
	code   int
	reason string
}

func (e *httpError) Error() string { return e.reason }

// StatusError lets a Backend choose the status code and reason of an error.
type StatusError struct {
	Code   int
	Reason string
}

func (e *StatusError) Error() string { return e.Reason }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, reason: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &httpError{code: http.StatusRequestEntityTooLarge, reason: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{code: http.StatusNotFound, reason: fmt.Sprintf(format, args...)}
}

// errorMap translates the errors of the layers below into what the client sees, in one
// place. Reasons follow Consul's wording where clients or operators match on it.
var errorMap = []struct {
	err    error
	code   int
	reason string
}{
	{consensus.ErrNoLeader, http.StatusInternalServerError, "No cluster leader"},
	{consensus.ErrNotLeader, http.StatusInternalServerError, "No cluster leader"},
	{consensus.ErrTimeout, http.StatusServiceUnavailable, "Timed out waiting for the cluster to accept the write"},
	{consensus.ErrShutdown, http.StatusServiceUnavailable, "Agent is shutting down"},
	{errPermissionDenied, http.StatusForbidden, "Permission denied"},
	{state.ErrSessionNotFound, http.StatusBadRequest, "Invalid session: it does not exist or was invalidated"},
	{state.ErrSessionExists, http.StatusConflict, "Session ID already in use"},
}

var errPermissionDenied = errors.New("permission denied")

// statusFor returns the status code and reason for err.
func statusFor(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.code, he.reason
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code, se.Reason
	}
	for _, m := range errorMap {
		if errors.Is(err, m.err) {
			return m.code, m.reason
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, "Request timed out"
	}
	return http.StatusInternalServerError, err.Error()
}

// writeError answers err as a text/plain body, Consul's error format.
func writeError(w http.ResponseWriter, err error) {
	code, reason := statusFor(err)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(reason + "\n"))
}

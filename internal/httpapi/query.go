package httpapi

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wolke-platform/wolke/internal/state"
)

// Consistency is the read mode a client asked for.
type Consistency int

const (
	// Default reads are answered by the leader from its state, without a quorum round.
	Default Consistency = iota
	// Consistent reads first confirm leadership with a quorum (linearizable).
	Consistent
	// Stale reads are answered by any server from its local state.
	Stale
)

func (c Consistency) String() string {
	switch c {
	case Consistent:
		return "consistent"
	case Stale:
		return "stale"
	}
	return "leader"
}

// queryOf is r's query string, parsed once per request however many layers read it
// (routing, forwarding, the handler, the blocking-query options). The parsed values
// are kept in r.Form, which nothing else fills: the API takes no form bodies.
func queryOf(r *http.Request) url.Values {
	if r.Form == nil {
		r.Form = r.URL.Query()
	}
	return r.Form
}

// queryOptions are the blocking-query and consistency parameters of a read.
type queryOptions struct {
	index uint64
	wait  time.Duration
	mode  Consistency
}

// has reports whether a query parameter is present; Consul's value-less flags arrive as
// "?stale" or "?stale=" and presence is what counts.
func has(q url.Values, name string) bool {
	_, ok := q[name]
	return ok
}

func (s *Server) parseQuery(q url.Values) (queryOptions, error) {
	var o queryOptions
	if has(q, "stale") && has(q, "consistent") {
		return o, badRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
	}
	if has(q, "stale") {
		o.mode = Stale
	} else if has(q, "consistent") {
		o.mode = Consistent
	}
	if v := q.Get("index"); v != "" {
		idx, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, badRequest("Invalid index: %q is not an unsigned integer", v)
		}
		o.index = idx
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return o, badRequest("Invalid wait time: %q", v)
		}
		o.wait = d
	}
	return o, nil
}

// readBarrier makes the local state fit to answer a read in the given mode.
func (s *Server) readBarrier(ctx context.Context, mode Consistency) error {
	return s.backend.ReadBarrier(ctx, mode)
}

// blockingQuery runs query until its index differs from opts.index or the wait ends,
// Consul's long-poll semantics: an index that went backwards (a restore, reaped
// tombstones) returns at once so the client resets. query registers what it read in
// the watch set it is given (nil for a non-blocking read).
func (s *Server) blockingQuery(ctx context.Context, opts queryOptions, query func(ws *state.WatchSet) (uint64, error)) (uint64, error) {
	if err := s.readBarrier(ctx, opts.mode); err != nil {
		return 0, err
	}
	if opts.index == 0 {
		return query(nil)
	}
	wait := opts.wait
	if wait == 0 {
		wait = s.cfg.DefaultWait
	}
	wait = min(wait, s.cfg.MaxWait)
	// Jitter spreads the timeouts of many clients that started together.
	if j := int64(wait / 16); j > 0 {
		wait += time.Duration(rand.Int64N(j))
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	store := s.backend.Store()
	for {
		ws := state.NewWatchSet()
		ws.Add(store.AbandonCh())
		ws.Add(s.stopCh)
		idx, err := query(ws)
		if err != nil || idx != opts.index {
			ws.Release()
			return idx, err
		}
		werr := ws.Wait(ctx)
		ws.Release()
		if werr != nil || s.stopping() {
			// Timed out, the client left, or the agent is draining: answer with the
			// current state.
			return query(nil)
		}
		if opts.mode == Consistent {
			if err := s.readBarrier(ctx, opts.mode); err != nil {
				return 0, err
			}
		}
	}
}

// setMeta writes the headers every read carries.
func (s *Server) setMeta(w http.ResponseWriter, index uint64, mode Consistency) {
	h := w.Header()
	if index == 0 {
		index = 1 // a 0 index sends naive clients into a busy loop
	}
	h["X-Consul-Index"] = []string{strconv.FormatUint(index, 10)}
	li := s.backend.LeaderInfo()
	if li.Known {
		h["X-Consul-Knownleader"] = headerTrue
	} else {
		h["X-Consul-Knownleader"] = headerFalse
	}
	if ms := li.LastContact.Milliseconds(); ms == 0 {
		h["X-Consul-Lastcontact"] = headerZero
	} else {
		h["X-Consul-Lastcontact"] = []string{strconv.FormatInt(ms, 10)}
	}
	h["X-Consul-Effective-Consistency"] = consistencyHeaders[mode]
}

// Header values that every answer carries are shared, not allocated per request.
// Nothing modifies a header value in place (Set and Add replace or append), so
// sharing them is safe.
var (
	headerTrue         = []string{"true"}
	headerFalse        = []string{"false"}
	headerZero         = []string{"0"}
	consistencyHeaders = [...][]string{
		Default: {Default.String()}, Consistent: {Consistent.String()}, Stale: {Stale.String()},
	}
)

func (s *Server) stopping() bool {
	select {
	case <-s.stopCh:
		return true
	default:
		return false
	}
}

package httpapi

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/wolke-platform/wolke/internal/eventlog"
)

// Events is what /v1/event needs; a Backend that also implements it serves
// PUT /v1/event/fire/<name> and GET /v1/event/list. Events are agent-local: the API
// never forwards these requests, the agent gossips fired events itself. Both methods
// are called from many request goroutines at once.
type Events interface {
	// FireEvent validates ev (Name, Payload and the filters; the rest is ignored),
	// gives it an ID and Version and broadcasts it by gossip to every agent, this one
	// included. It returns the event as fired, and an error wrapping
	// eventlog.ErrInvalid or eventlog.ErrTooLarge for what the client got wrong. It
	// does not block on delivery.
	FireEvent(ctx context.Context, ev eventlog.UserEvent) (eventlog.UserEvent, error)
	// ListEvents returns this agent's events named name ("" for all), oldest first,
	// the result's opaque index, and a channel closed when the next event arrives. It
	// never blocks; the caller waits on the channel.
	ListEvents(name string) (events []eventlog.UserEvent, index uint64, changed <-chan struct{})
}

// eventErrors maps the event layer's errors to what the client sees; the reason is the
// error's own text, which says what was wrong.
var eventErrors = []struct {
	err  error
	code int
}{
	{eventlog.ErrInvalid, http.StatusBadRequest},
	{eventlog.ErrTooLarge, http.StatusRequestEntityTooLarge},
}

func eventError(err error) error {
	for _, m := range eventErrors {
		if errors.Is(err, m.err) {
			return &httpError{code: m.code, reason: trimSentinel(err.Error(), m.err)}
		}
	}
	return err
}

// trimSentinel removes the sentinel's text and ": " from the front of a wrapped error's
// message ("eventlog: invalid event: Missing name" -> "Missing name").
func trimSentinel(msg string, sentinel error) string {
	p := sentinel.Error() + ": "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

func (s *Server) events(w http.ResponseWriter) (Events, bool) {
	ev, ok := s.backend.(Events)
	if !ok {
		writeError(w, notFound("this agent does not handle user events"))
	}
	return ev, ok
}

// eventFire serves /v1/event/fire/<name>: PUT (consul/api) or POST (Spring Cloud
// Consul's bus binder), the body is the payload, ?node, ?service and ?tag are regular
// expressions restricting which agents keep the event. The answer is the event, with
// the ID it was given.
func (s *Server) eventFire(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT", "POST")
		return
	}
	evs, ok := s.events(w)
	if !ok {
		return
	}
	if name == "" {
		writeError(w, badRequest("Missing name"))
		return
	}
	q := queryOf(r)
	ev := eventlog.UserEvent{
		Name:          name,
		NodeFilter:    q.Get("node"),
		ServiceFilter: q.Get("service"),
		TagFilter:     q.Get("tag"),
	}
	// Nothing larger than a gossip message can be fired; read one byte more to tell.
	body, err := io.ReadAll(io.LimitReader(r.Body, eventlog.MaxWireBytes+1))
	if err != nil {
		writeError(w, badRequest("Reading the payload: %v", err))
		return
	}
	if len(body) > eventlog.MaxWireBytes {
		writeError(w, tooLarge("Payload too large: a user event must fit into one %d-byte gossip message "+
			"(name, filters and payload together; at most %d bytes of payload fit with this name and these filters)",
			eventlog.MaxWireBytes, eventlog.MaxPayload(ev)))
		return
	}
	if len(body) > 0 {
		ev.Payload = body
	}
	fired, err := evs.FireEvent(r.Context(), ev)
	if err != nil {
		writeError(w, eventError(err))
		return
	}
	writeJSONValue(w, fired)
}

// eventList serves GET /v1/event/list?name=: this agent's recent events, oldest first.
// It blocks like Consul's: with ?index=N it waits (up to ?wait) until the index, which
// hashes the newest listed event's ID, differs from N. The index is opaque and not
// monotonic; it is never 0.
func (s *Server) eventList(w http.ResponseWriter, r *http.Request) {
	evs, ok := s.events(w)
	if !ok {
		return
	}
	q := queryOf(r)
	opts, err := s.parseQuery(q)
	if err != nil {
		writeError(w, err)
		return
	}
	name := q.Get("name")
	if opts.index > 0 {
		s.metrics.blocking.Inc()
		defer s.metrics.blocking.Dec()
	}
	events, idx := s.waitEvents(r.Context(), evs, name, opts)
	if r.Context().Err() != nil {
		return
	}
	// The events are this agent's own view, whatever consistency was asked for.
	s.setMeta(w, idx, Stale)
	if events == nil {
		events = []eventlog.UserEvent{}
	}
	writeJSONValue(w, events)
}

// waitEvents lists events, and while the index equals opts.index waits for the next
// one, until the wait ends, the client leaves or the server drains; then it answers
// with what there is.
func (s *Server) waitEvents(ctx context.Context, evs Events, name string, opts queryOptions) ([]eventlog.UserEvent, uint64) {
	events, idx, changed := evs.ListEvents(name)
	if opts.index == 0 || idx != opts.index {
		return events, idx
	}
	wait := opts.wait
	if wait == 0 {
		wait = s.cfg.DefaultWait
	}
	wait = min(wait, s.cfg.MaxWait)
	if j := int64(wait / 16); j > 0 {
		wait += time.Duration(rand.Int64N(j))
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for idx == opts.index {
		select {
		case <-changed:
		case <-timer.C:
			return events, idx
		case <-ctx.Done():
			return events, idx
		case <-s.stopCh:
			events, idx, _ = evs.ListEvents(name) // draining: answer at once
			return events, idx
		}
		events, idx, changed = evs.ListEvents(name)
	}
	return events, idx
}

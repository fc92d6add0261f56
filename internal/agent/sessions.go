package agent

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/membership"
	"github.com/wolke-platform/wolke/internal/state"
)

// Interface guard: the agent serves the session endpoints.
var _ httpapi.Sessions = (*Agent)(nil)

// originHeader carries the name of the agent a client talked to through forwarding,
// so that a session created through a client agent belongs to that agent's node.
const originHeader = "X-Wolke-Origin-Node"

// ttlMultiplier is Consul's grace: a session lives until twice its TTL has passed
// without a renewal, so a renewal sent at TTL/2 (consul/api's rhythm) that is late
// or lost does not cost the lock.
const ttlMultiplier = 2

// sessionTimers invalidates sessions whose TTL ran out. Only the leader arms them; a
// new leader re-arms every session with a full grace period, as Consul does, because
// it cannot know when the old leader last saw a renewal.
type sessionTimers struct {
	mu     sync.Mutex
	timers map[string]*time.Timer
	expire func(id string)
}

func (t *sessionTimers) arm(id string, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timers == nil {
		t.timers = map[string]*time.Timer{}
	}
	if old := t.timers[id]; old != nil {
		old.Stop()
	}
	t.timers[id] = time.AfterFunc(ttl*ttlMultiplier, func() { t.expire(id) })
}

func (t *sessionTimers) stop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.timers[id]; old != nil {
		old.Stop()
		delete(t.timers, id)
	}
}

func (t *sessionTimers) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, tm := range t.timers {
		tm.Stop()
		delete(t.timers, id)
	}
}

// SessionNode implements httpapi.Sessions.
func (a *Agent) SessionNode(r *http.Request) string {
	if n := r.Header.Get(originHeader); n != "" {
		return n
	}
	return a.cfg.NodeName
}

// CheckSessionNode implements httpapi.Sessions: the node must be an alive member of
// the pool, and every check bound to the session must exist on that node in the
// catalog and not be critical (Consul's rules). serfHealth is the node's gossip status,
// which the leader mirrors into the catalog; it is judged from gossip directly, so a
// session can be created before the catalog has caught up with a new node.
func (a *Agent) CheckSessionNode(node string, nodeChecks, serviceChecks []string) error {
	alive := false
	for _, m := range a.pool.Members() {
		if m.Name == node && m.Status == membership.StatusAlive {
			alive = true
		}
	}
	if !alive {
		return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Missing node registration: node '" + node + "' is not an alive member"}
	}
	_, checks, err := a.store.NodeChecks(nil, node)
	if err != nil {
		return err
	}
	byID := map[string]*state.Check{}
	for _, c := range checks {
		byID[c.CheckID] = c
	}
	for _, id := range append(append([]string{}, nodeChecks...), serviceChecks...) {
		if id == state.SerfCheckID {
			continue
		}
		c := byID[id]
		switch {
		case c == nil:
			return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Missing check '" + id + "' registration"}
		case c.Status == state.HealthCritical:
			return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Check '" + id + "' is in critical state"}
		}
	}
	return nil
}

// SessionCreated implements httpapi.Sessions.
func (a *Agent) SessionCreated(id string, ttl time.Duration) { a.sessionTTL.arm(id, ttl) }

// SessionRenewed implements httpapi.Sessions.
func (a *Agent) SessionRenewed(id string, ttl time.Duration) { a.sessionTTL.arm(id, ttl) }

// SessionDestroyed implements httpapi.Sessions.
func (a *Agent) SessionDestroyed(id string) { a.sessionTTL.stop(id) }

// SessionTTLMin implements httpapi.Sessions.
func (a *Agent) SessionTTLMin() time.Duration { return a.cfg.SessionTTLMin }

// expireSession runs when a TTL timer fires: the leader replicates the invalidation.
func (a *Agent) expireSession(id string) {
	a.sessionTTL.stop(id)
	if a.node == nil || !a.node.ReadReady() {
		return
	}
	a.logger.Info("session TTL expired", "session", id)
	if err := a.destroySession(id); err != nil {
		a.logger.Warn("invalidating an expired session failed; retrying", "session", id, "err", err)
		// Try again soon; a new leader would re-arm it anyway.
		a.sessionTTL.arm(id, time.Second/ttlMultiplier)
	}
}

func (a *Agent) destroySession(id string) error {
	cmd, err := command.Encode(command.Session, &command.SessionRequest{
		Op: command.SessionDestroy, Session: state.Session{ID: id}, Now: time.Now().UnixNano()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = a.node.Apply(ctx, cmd)
	return err
}

// armAllSessions gives every session with a TTL a fresh timer (on becoming leader).
func (a *Agent) armAllSessions() {
	_, sessions, err := a.store.SessionList(nil, "")
	if err != nil {
		return
	}
	for _, s := range sessions {
		if ttl, err := time.ParseDuration(s.TTL); err == nil && ttl > 0 {
			a.sessionTTL.arm(s.ID, ttl)
		}
	}
}

// invalidateSessions destroys the sessions whose owner is gone: bound to serfHealth
// and their node failed or left (or gossip forgot it), or bound to a check that is
// critical or no longer registered. Their locks and ephemeral keys must not outlive it.
func (a *Agent) invalidateSessions() {
	_, sessions, err := a.store.SessionList(nil, "")
	if err != nil || len(sessions) == 0 {
		return
	}
	status := map[string]membership.Status{}
	for _, m := range a.pool.Members() {
		status[m.Name] = m.Status
	}
	for _, s := range sessions {
		reason := ""
		if hasString(s.NodeChecks, state.SerfCheckID) {
			if st, known := status[s.Node]; !known || st == membership.StatusFailed || st == membership.StatusLeft {
				reason = "node " + st.String()
			}
		}
		if reason == "" {
			reason = a.boundCheckFailed(s)
		}
		if reason == "" {
			continue
		}
		a.logger.Info("invalidating a session", "session", s.ID, "node", s.Node, "reason", reason)
		if err := a.destroySession(s.ID); err != nil {
			a.logger.Warn("invalidating session failed", "session", s.ID, "err", err)
			return
		}
		a.sessionTTL.stop(s.ID)
	}
}

// boundCheckFailed names the first check bound to s that is critical or gone, or "".
func (a *Agent) boundCheckFailed(s *state.Session) string {
	ids := append(append([]string{}, s.NodeChecks...), s.ServiceChecks...)
	if len(ids) == 0 || len(ids) == 1 && ids[0] == state.SerfCheckID {
		return ""
	}
	_, checks, err := a.store.NodeChecks(nil, s.Node)
	if err != nil {
		return ""
	}
	byID := map[string]*state.Check{}
	for _, c := range checks {
		byID[c.CheckID] = c
	}
	for _, id := range ids {
		if id == state.SerfCheckID {
			continue
		}
		switch c := byID[id]; {
		case c == nil:
			return "check " + id + " deregistered"
		case c.Status == state.HealthCritical:
			return "check " + id + " critical"
		}
	}
	return ""
}

// watchBoundChecks invalidates, on the leader, the sessions bound to a check as soon as
// the check turns critical or goes away: it wakes on every change of the checks table
// (a cheap index watch) rather than at the next reconciliation tick.
func (a *Agent) watchBoundChecks() {
	defer a.wg.Done()
	for {
		ws := state.NewWatchSet()
		a.store.ChecksIndex(ws)
		ws.Add(a.store.AbandonCh())
		ctx, cancel := context.WithCancel(context.Background())
		changed := ws.Chan(ctx)
		select {
		case <-a.stopCh:
			cancel()
			ws.Release()
			return
		case <-changed:
		}
		cancel()
		ws.Release()
		if a.node.ReadReady() {
			a.invalidateSessionsOfFailedChecks()
		}
	}
}

// invalidateSessionsOfFailedChecks is invalidateSessions for bound checks only.
func (a *Agent) invalidateSessionsOfFailedChecks() {
	_, sessions, err := a.store.SessionList(nil, "")
	if err != nil {
		return
	}
	for _, s := range sessions {
		if reason := a.boundCheckFailed(s); reason != "" {
			a.logger.Info("invalidating a session", "session", s.ID, "node", s.Node, "reason", reason)
			if err := a.destroySession(s.ID); err != nil {
				a.logger.Warn("invalidating session failed", "session", s.ID, "err", err)
				return
			}
			a.sessionTTL.stop(s.ID)
		}
	}
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

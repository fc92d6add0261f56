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
// the pool (the catalog arrives with service discovery; until then gossip is the
// registry of nodes), and the only node check that exists is serfHealth.
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
	for _, c := range nodeChecks {
		if c != "serfHealth" {
			return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Missing check '" + c + "' registration"}
		}
	}
	if len(serviceChecks) > 0 {
		return &httpapi.StatusError{Code: http.StatusBadRequest, Reason: "Missing check '" + serviceChecks[0] + "' registration"}
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

// invalidateSessionsOfFailedNodes destroys the sessions bound to the serfHealth of a
// node that gossip says failed or left (or forgot): the node's locks and ephemeral
// keys must not outlive it.
func (a *Agent) invalidateSessionsOfFailedNodes() {
	_, sessions, err := a.store.SessionList(nil, "")
	if err != nil || len(sessions) == 0 {
		return
	}
	status := map[string]membership.Status{}
	for _, m := range a.pool.Members() {
		status[m.Name] = m.Status
	}
	for _, s := range sessions {
		if !hasString(s.NodeChecks, "serfHealth") {
			continue
		}
		st, known := status[s.Node]
		if known && st != membership.StatusFailed && st != membership.StatusLeft {
			continue
		}
		a.logger.Info("invalidating the session of a failed node", "session", s.ID, "node", s.Node, "status", st.String())
		if err := a.destroySession(s.ID); err != nil {
			a.logger.Warn("invalidating session failed", "session", s.ID, "err", err)
			return
		}
		a.sessionTTL.stop(s.ID)
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

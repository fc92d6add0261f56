package state

import (
	"sync"
	"time"
)

// lockDelay remembers, per key, until when a released lock may not be taken again.
// It is derived state: every server sets it while applying a session invalidation, with
// the time the leader stamped on that log entry, so all servers agree. It is not in
// snapshots (Consul's isn't either): a restarted server forgets pending delays, which
// only lets a lock be taken a little early after a crash.
type lockDelay struct {
	mu     sync.Mutex
	delays map[string]time.Time
}

func newLockDelay() *lockDelay { return &lockDelay{delays: map[string]time.Time{}} }

func (l *lockDelay) set(key string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delays[key] = until
}

func (l *lockDelay) get(key string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.delays[key]
}

// blocked reports whether key is still in its delay at now, forgetting expired ones.
func (l *lockDelay) blocked(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.delays[key]
	if !ok {
		return false
	}
	if !now.Before(until) {
		delete(l.delays, key)
		return false
	}
	return true
}

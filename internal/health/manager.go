package health

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Manager runs the agent's checks: one runner per interval-based check, one
// timer per TTL check, and the bookkeeping of reported status, thresholds
// and critical periods. All methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	q     *dispatcher

	// minInterval is MinInterval; tests lower it to run real-clock checks fast.
	minInterval time.Duration

	mu     sync.Mutex
	checks map[string]*check
	closed bool

	shutdownOnce sync.Once
}

// check is the state of one registered check. Fields after def are guarded
// by Manager.mu. A replaced or removed check is no longer in
// Manager.checks, which makes its late runner reports and timers no-ops.
type check struct {
	id      string
	def     Definition
	kind    string
	run     *runner // nil for TTL checks
	cleanup func()  // releases probe resources after the runner stopped, or nil

	th     thresholds
	status string
	output string
	at     time.Time

	ttlTimer      Timer
	ttlGen        uint64
	lastTTLOutput string

	criticalSince time.Time
	deregTimer    Timer
	deregGen      uint64
}

// NewManager returns a Manager with no checks. It copies cfg.
func NewManager(cfg Config) *Manager {
	cfg = cfg.withDefaults()
	m := &Manager{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "health"),
		clock:       cfg.Clock,
		q:           newDispatcher(),
		minInterval: MinInterval,
		checks:      map[string]*check{},
	}
	go m.q.run(m.isCurrent, cfg.Notify, cfg.Deregister)
	return m
}

// Add validates def and starts running it under def.CheckID(), replacing
// (and stopping) a check with the same ID. The check starts with def.Status
// (critical when empty, as in Consul), queued as an Update; an
// interval-based check first runs after a random stagger within its
// interval, then every interval. Script checks are refused with
// ErrScriptsDisabled unless Config.EnableScriptChecks is set.
func (m *Manager) Add(def Definition) error {
	if err := def.Validate(m.cfg.EnableScriptChecks); err != nil {
		return err
	}
	c := &check{id: def.CheckID(), def: def, kind: def.Type()}
	c.th = newThresholds(def.SuccessBeforePassing, def.FailuresBeforeWarning, def.FailuresBeforeCritical)
	var p prober
	switch c.kind {
	case TypeHTTP:
		hp := newHTTPProbe(def, m.cfg.TLSClientConfig)
		p, c.cleanup = hp, hp.close
	case TypeTCP:
		p = newTCPProbe(def, m.cfg.TLSClientConfig)
	case TypeGRPC:
		p = newGRPCProbe(def, m.cfg.TLSClientConfig)
	case TypeScript:
		p = newScriptProbe(def)
	}
	interval := def.Interval
	if p != nil && interval < m.minInterval {
		m.log.Warn("check interval below minimum, using the minimum",
			"check", c.id, "interval", interval, "minimum", m.minInterval)
		interval = m.minInterval
	}
	status := def.Status
	if status == "" {
		status = StatusCritical
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrShutdown
	}
	old := m.checks[c.id]
	if old != nil {
		m.stopTimersLocked(old)
	}
	m.checks[c.id] = c
	m.setLocked(c, status, "")
	if c.kind == TypeTTL {
		m.armTTLLocked(c)
	}
	if p != nil {
		c.run = newRunner(m.clock, interval, def.effectiveTimeout(), p, func(r result) { m.report(c, r) })
		c.run.start()
	}
	m.mu.Unlock()

	if old != nil {
		old.stopRunner()
	}
	m.log.Debug("check added", "check", c.id, "type", c.kind, "interval", interval)
	return nil
}

// Remove stops the check and forgets it. It returns ErrUnknownCheck for an
// ID that is not registered. When Remove returns, the check's runner has
// stopped (a probe in flight was cancelled) and no later Update of it is queued.
func (m *Manager) Remove(id string) error {
	m.mu.Lock()
	c := m.checks[id]
	if c == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownCheck, id)
	}
	delete(m.checks, id)
	m.stopTimersLocked(c)
	m.mu.Unlock()
	c.stopRunner()
	return nil
}

// UpdateTTL sets the status and output of a TTL check and restarts its TTL
// (the agent's check pass/warn/fail/update endpoints). Output longer than
// the check's OutputMaxSize is truncated. Thresholds do not apply to TTL
// checks (as in Consul). Errors: ErrInvalidStatus, ErrUnknownCheck, ErrNotTTL.
func (m *Manager) UpdateTTL(id, status, output string) error {
	if !ValidStatus(status) {
		return fmt.Errorf("%w: %q (want passing, warning or critical)", ErrInvalidStatus, status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.checks[id]
	if c == nil {
		return fmt.Errorf("%w: %q", ErrUnknownCheck, id)
	}
	if c.kind != TypeTTL {
		return fmt.Errorf("%w: %q is a %s check", ErrNotTTL, id, c.kind)
	}
	output = truncate(output, c.def.outputMaxSize())
	c.lastTTLOutput = output
	m.setLocked(c, status, output)
	m.armTTLLocked(c)
	return nil
}

// Status returns the check's reported state, or false for an unknown ID.
func (m *Manager) Status(id string) (Update, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.checks[id]
	if c == nil {
		return Update{}, false
	}
	return Update{CheckID: c.id, Status: c.status, Output: c.output, At: c.at}, true
}

// Shutdown stops every check, waits for their runners, drops undelivered
// callbacks and waits for a callback in progress. Later calls to Add return
// ErrShutdown. Shutdown is idempotent; it must not be called from Notify or
// Deregister (it waits for them).
func (m *Manager) Shutdown() {
	m.shutdownOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		all := m.checks
		m.checks = map[string]*check{}
		for _, c := range all {
			m.stopTimersLocked(c)
		}
		m.mu.Unlock()
		var wg sync.WaitGroup
		for _, c := range all {
			wg.Go(c.stopRunner)
		}
		wg.Wait()
		m.q.close()
	})
}

func (m *Manager) isCurrent(c *check) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checks[c.id] == c
}

// report applies one probe result of c through its thresholds.
func (m *Manager) report(c *check, r result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.checks[c.id] != c {
		return
	}
	status, ok := c.th.apply(r.status)
	if !ok {
		m.log.Debug("check result below threshold, status kept",
			"check", c.id, "result", r.status, "status", c.status)
		return
	}
	m.setLocked(c, status, r.output)
}

// setLocked records a reported state; unchanged states are not queued.
func (m *Manager) setLocked(c *check, status, output string) {
	if status == c.status && output == c.output {
		return
	}
	prev := c.status
	c.status, c.output, c.at = status, output, m.clock.Now()
	m.q.push(event{c: c, update: Update{CheckID: c.id, Status: status, Output: output, At: c.at}})
	if status != prev && prev != "" {
		lvl := slog.LevelDebug
		if status != StatusPassing {
			lvl = slog.LevelWarn
		}
		m.log.Log(context.Background(), lvl, "check status changed", "check", c.id, "from", prev, "to", status)
	}
	switch {
	case status == StatusCritical && prev != StatusCritical:
		m.startCriticalLocked(c)
	case status != StatusCritical && prev == StatusCritical:
		m.endCriticalLocked(c)
	}
}

// startCriticalLocked begins a critical period and, for a service check with
// DeregisterCriticalServiceAfter, arms the deregistration timer.
func (m *Manager) startCriticalLocked(c *check) {
	c.criticalSince = c.at
	after := c.def.DeregisterCriticalServiceAfter
	if after <= 0 || c.def.ServiceID == "" {
		return
	}
	if after < m.cfg.MinDeregisterAfter {
		m.log.Warn("DeregisterCriticalServiceAfter below minimum, using the minimum",
			"check", c.id, "value", after, "minimum", m.cfg.MinDeregisterAfter)
		after = m.cfg.MinDeregisterAfter
	}
	c.deregGen++
	gen, since := c.deregGen, c.criticalSince
	c.deregTimer = m.clock.AfterFunc(after, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.checks[c.id] != c || c.deregGen != gen || c.status != StatusCritical {
			return
		}
		c.deregTimer = nil
		m.log.Warn("check critical for too long, asking to deregister its service",
			"check", c.id, "service", c.def.ServiceID, "after", after)
		m.q.push(event{c: c, dereg: &Deregistration{
			CheckID: c.id, ServiceID: c.def.ServiceID, CriticalSince: since, After: after,
		}})
	})
}

func (m *Manager) endCriticalLocked(c *check) {
	c.criticalSince = time.Time{}
	c.deregGen++
	if c.deregTimer != nil {
		c.deregTimer.Stop()
		c.deregTimer = nil
	}
}

// armTTLLocked (re)starts the TTL of a TTL check.
func (m *Manager) armTTLLocked(c *check) {
	if c.ttlTimer != nil {
		c.ttlTimer.Stop()
	}
	c.ttlGen++
	gen := c.ttlGen
	c.ttlTimer = m.clock.AfterFunc(c.def.TTL, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.checks[c.id] != c || c.ttlGen != gen {
			return
		}
		c.ttlTimer = nil
		out := "TTL expired"
		if c.lastTTLOutput != "" {
			out += " (last output before timeout follows): " + c.lastTTLOutput
		}
		m.setLocked(c, StatusCritical, out)
	})
}

func (m *Manager) stopTimersLocked(c *check) {
	c.ttlGen++
	c.deregGen++
	if c.ttlTimer != nil {
		c.ttlTimer.Stop()
		c.ttlTimer = nil
	}
	if c.deregTimer != nil {
		c.deregTimer.Stop()
		c.deregTimer = nil
	}
}

// stopRunner stops c's runner (waiting for it) and releases probe resources.
func (c *check) stopRunner() {
	if c.run != nil {
		c.run.stop()
	}
	if c.cleanup != nil {
		c.cleanup()
	}
}

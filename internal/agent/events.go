package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/wolke-platform/wolke/internal/eventlog"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/membership"
)

// User events (/v1/event): fired on any agent, spread by gossip to all, kept by each
// agent in its own eventlog.Log. No Raft, no forwarding: a client agent fires and lists
// on its own.

// Interface guard: the agent serves /v1/event.
var _ httpapi.Events = (*Agent)(nil)

// newEventLog is the agent's event log: Consul's 256 events. Node filters match this
// agent's node name; service and tag filters match its local services.
func (a *Agent) newEventLog() (*eventlog.Log, error) {
	cfg := eventlog.DefaultConfig(a.cfg.NodeName)
	// Service and tag filters match against this agent's own services.
	cfg.Services = a.localServiceTags
	return eventlog.New(cfg)
}

// localServiceTags maps each local service name to its tags, for event filters.
func (a *Agent) localServiceTags() map[string][]string {
	if a.local == nil {
		return map[string][]string{}
	}
	out := map[string][]string{}
	for _, s := range a.LocalServices() {
		out[s.Service] = append(out[s.Service], s.Tags...)
	}
	return out
}

// FireEvent implements httpapi.Events.
func (a *Agent) FireEvent(_ context.Context, ev eventlog.UserEvent) (eventlog.UserEvent, error) {
	fired := eventlog.UserEvent{
		ID:            newUUID(),
		Name:          ev.Name,
		Payload:       ev.Payload,
		NodeFilter:    ev.NodeFilter,
		ServiceFilter: ev.ServiceFilter,
		TagFilter:     ev.TagFilter,
		Version:       eventlog.Version,
	}
	name, payload, err := eventlog.Encode(fired)
	if err != nil {
		return eventlog.UserEvent{}, err
	}
	if a.pool == nil {
		return eventlog.UserEvent{}, errors.New("agent: gossip is not running")
	}
	// Serf delivers the event to this agent too, through dispatchEvents.
	if err := a.pool.UserEvent(name, payload, false); err != nil {
		return eventlog.UserEvent{}, fmt.Errorf("agent: fire event %q: %w", ev.Name, err)
	}
	a.logger.Debug("user event fired", "name", fired.Name, "id", fired.ID)
	return fired, nil
}

// ListEvents implements httpapi.Events.
func (a *Agent) ListEvents(name string) ([]eventlog.UserEvent, uint64, <-chan struct{}) {
	return a.events.List(name)
}

// receiveEvent takes in a gossip user event: Consul-style events are decoded and kept
// when they pass this agent's filters; other subsystems' user events are ignored.
func (a *Agent) receiveEvent(u membership.UserEvent) {
	ev, err := eventlog.Decode(u.Name, u.Payload, u.LTime)
	switch {
	case errors.Is(err, eventlog.ErrNotEvent):
		return
	case err != nil:
		a.logger.Warn("dropping a user event that cannot be decoded", "err", err)
		return
	}
	if ev.Version > eventlog.Version {
		a.logger.Warn("user event of a newer version may use unsupported features",
			"name", ev.Name, "id", ev.ID, "version", ev.Version)
	}
	v := a.events.Add(ev)
	a.logger.Debug("user event received", "name", ev.Name, "id", ev.ID, "ltime", ev.LTime, "verdict", v)
}

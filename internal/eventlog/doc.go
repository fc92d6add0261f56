// Package eventlog holds Consul-style user events on one agent: the event type and
// its validation (event.go), its encoding as a gossip (serf) user event (wire.go), the
// delivery filters (filter.go) and the bounded, deduplicating ring buffer that
// /v1/event/list reads and blocks on (log.go).
//
// Events are agent-local: they travel by gossip, carry no Raft index and promise
// neither delivery nor total order. Every agent keeps the last Config.Capacity events
// that passed its filters, in arrival order. The blocking-query index of a list is
// derived from the ID of its newest event (IDToIndex, Consul's scheme), so it is
// opaque: it changes when the newest event changes, but it does not grow.
//
// The package imports nothing of wolke's; the agent adapts membership's user events to
// Decode and Log.Add, and the HTTP API serves Log.List.
package eventlog

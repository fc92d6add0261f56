// Package health runs the agent's health checks (issue 5): HTTP, TCP, TTL,
// gRPC (grpc.health.v1) and, only when enabled, script checks. It follows
// Consul's agent/checks semantics (status strings, output formats, default
// timeouts, the 1 s minimum interval, the random first-run stagger,
// SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical and
// DeregisterCriticalServiceAfter) but replaces Consul's per-type copies of
// the start/stop/run loop with one shared periodic runner (runner.go).
//
// The package knows nothing about services, the catalog or HTTP endpoints:
// the agent decodes a [Definition], fills defaults such as the check name and
// ServiceID, calls [Manager.Add], and receives status changes through
// [Config.Notify] and deregistration requests through [Config.Deregister].
//
// Files: definition.go and decode.go (the check definition and its JSON
// form), manager.go (the registry of running checks), runner.go (the shared
// periodic runner), thresholds.go (consecutive-result counters), dispatch.go
// (the callback queue), clock.go (the injectable clock), and one probe_*.go
// file per check kind.
//
// # Callback contract
//
// Notify and Deregister are called from one dispatcher goroutine owned by
// the Manager, one call at a time, never while a Manager lock is held, so
// they may call back into the Manager. Runners only append to a queue and
// never wait for a callback. A slow callback therefore delays later
// callbacks but never a check. Every change is delivered, in order, until
// more than 1024 callbacks are waiting; from then on a new update of a
// check replaces that check's undelivered one, so a stalled consumer costs
// bounded memory and still receives each check's latest state.
// An update may still arrive for a check that Remove is removing
// concurrently; consumers ignore updates for checks they no longer know.
// After Shutdown returns no callback runs.
package health

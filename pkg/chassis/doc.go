// Package chassis is wolke's service chassis: everything a Go micro-service needs
// around its business logic, in one call, following the twelve factors.
//
// A complete service:
//
//	func main() {
//		chassis.Main(chassis.Service{
//			Name: "hello", Version: "1.0.0",
//			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//				fmt.Fprintln(w, "hello")
//			}),
//		})
//	}
//
// Run it next to an agent (`wolke agent -dev`) and it listens on PORT (0, the default,
// picks a free port), registers with the agent with an HTTP check on its readiness,
// serves JSON logs on stdout, Prometheus metrics and pprof on its admin port, follows
// its dynamic configuration in the KV store, and on SIGTERM leaves the catalog before
// it stops accepting requests, so that a rolling restart costs no request.
//
// # Configuration (factor III)
//
// Static configuration comes from the environment only: the chassis's own variables
// (PORT, ADMIN_PORT, WOLKE_HTTP_ADDR or CONSUL_HTTP_ADDR, LOG_LEVEL, ...; `<binary>
// help` lists them all with their defaults) and the service's, declared with struct
// tags on the struct Service.Config points to (see ParseEnv). A bad or missing
// variable fails the start before anything else happens: Run returns a *ConfigError
// naming every bad variable, and Main prints it as one line and exits with code 2.
//
// Dynamic configuration lives in the KV store under config/<service>/ and is watched
// with blocking queries: declare typed values with defaults and validators
// (Instance.Dynamic), read them with Get, react with OnChange. An invalid value is
// logged and ignored; the previous value stays.
//
// # Lifecycle (factors VI, VII, IX)
//
// Run binds its ports, loads the dynamic configuration, calls Setup, serves, registers
// the instance (check passing at once when it is ready, DeregisterCriticalServiceAfter
// as the safety net for a crash) and logs "ready", typically within milliseconds. On
// SIGTERM (or when its context ends) it turns not ready, deregisters, waits until the
// catalog has dropped it and then DEREGISTER_WAIT more, stops accepting, drains
// in-flight requests within DRAIN_TIMEOUT and returns nil (exit 0). The instance keeps
// no state of its own: what must survive it belongs in the KV store or a database.
//
// # Diagnostics
//
// The admin port (ADMIN_PORT, registered as meta admin_port) serves /health/live,
// /health/ready (503 while starting, draining, or while a service named in
// Service.Requires has no passing instance or a Service.Checks function fails),
// /metrics (the instance's own registry: RED metrics per route pattern, client,
// breaker and Go runtime series), /info and /debug/pprof/. Every API request passes
// one middleware: W3C trace context (OpenTelemetry; spans exported per
// OTEL_TRACES_EXPORTER, off by default), request ID (X-Request-Id, else the trace ID),
// deadline (X-Request-Timeout), panic recovery, metrics and a JSON access log line.
// Log with Instance.Logger and the request's context to get its IDs on every line.
//
// # Client
//
// Instance.Client returns an *http.Client for which http://<service>/path means "a
// passing instance of <service>": resolved from memory (the catalog is watched with
// blocking queries), balanced by power of two choices, retried on another instance
// when that is safe, guarded by a circuit breaker, a retry budget and passive ejection
// per service, bounded by per-attempt timeouts and the caller's deadline, which
// travels downstream with the trace context. ClientOptions.Fallback answers when the
// service cannot (graceful degradation).
//
// # Coordination
//
// Instance.Lock takes a lock on a KV key with a session and returns its fencing token
// (the key's ModifyIndex at acquisition); Instance.Elect runs a function only while
// this instance leads. Both work with consul/api's locks and `wolke lock`.
//
// # Admin tasks (factor XII)
//
// Service.Tasks are one-off commands run as `<binary> <task> [args]` with the same
// environment, configuration and clients, without serving or registering.
//
// See docs/chassis.md for the complete guide.
package chassis

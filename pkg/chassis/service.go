package chassis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Service declares a service: what it is called, what it serves and what it needs.
// Only Name is required; every other zero field means "none" or the default. Run
// and New take the Service by value.
type Service struct {
	// Name is the service's name in the catalog, its clients' URL host
	// (http://<name>/...) and the KV prefix of its dynamic configuration
	// (config/<name>/). Letters, digits and dashes, starting with a letter.
	Name string
	// Version is logged, registered (meta "version") and exported as the version
	// label of chassis_build_info.
	Version string

	// Config, if not nil, points to the service's configuration struct, filled from
	// the environment by ParseEnv (see there for the struct tags) before anything
	// starts. A bad variable makes New and Run return a *ConfigError.
	Config any

	// Handler serves the service's API on PORT. Set at most one of Handler and Setup;
	// with neither, the API port answers 404 (a worker with only an admin port).
	Handler http.Handler
	// Setup builds the API handler once the instance is configured, its dynamic
	// configuration loaded and its ports bound, and before it registers: the place to
	// create clients, declare dynamic values, open connections and start background
	// work with Instance.Go. An error stops the start and is returned by Run.
	Setup func(ctx context.Context, in *Instance) (http.Handler, error)

	// Requires names services this one cannot serve without: the instance is not
	// ready (and so not in the catalog's healthy list) while one of them has no
	// passing instance. Keep the graph of Requires acyclic.
	Requires []string
	// Checks are further readiness conditions (a database, a queue), run on every
	// /health/ready request with a one-second timeout; an error makes the instance
	// not ready, and its text is shown by /health/ready.
	Checks map[string]func(context.Context) error

	// Tags and Meta are added to the registration (besides SERVICE_TAGS and the meta
	// keys version and admin_port).
	Tags []string
	Meta map[string]string

	// Tasks are one-off admin commands (factor XII): `<binary> <task> [args...]` runs
	// the task with the same environment, configuration and clients as the service,
	// without opening ports or registering, and exits.
	Tasks map[string]Task

	// Args are the command-line arguments without the program name: empty to serve,
	// or a task name, "help" or "version". Main uses os.Args[1:].
	Args []string
	// LookupEnv reads the environment; nil means os.LookupEnv. Tests pass their own.
	LookupEnv func(string) (string, bool)
	// Stdout receives the log (and the output of help and version); nil means os.Stdout.
	Stdout io.Writer
}

// Task is a one-off admin command run by `<binary> <name> [args...]`.
type Task struct {
	// Help is one line shown by `<binary> help`.
	Help string
	// Run does the work; its error makes Main exit with code 1.
	Run func(ctx context.Context, in *Instance, args []string) error
}

var nameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{0,62}$`)

// validate checks the declaration itself (programming errors, not the environment).
func (s *Service) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("chassis: service name %q must be letters, digits and dashes, starting with a letter", s.Name)
	}
	if s.Handler != nil && s.Setup != nil {
		return errors.New("chassis: set Handler or Setup, not both")
	}
	for name, t := range s.Tasks {
		if name == "" || name[0] == '-' || name == "help" || name == "version" {
			return fmt.Errorf("chassis: %q cannot be a task name", name)
		}
		if t.Run == nil {
			return fmt.Errorf("chassis: task %q has no Run function", name)
		}
	}
	for _, r := range s.Requires {
		if !nameRE.MatchString(r) {
			return fmt.Errorf("chassis: required service name %q is not a service name", r)
		}
	}
	return nil
}

// Instance is one running instance of a Service: its configuration, logger, metrics
// registry, clients and lifecycle. New creates it; Run serves it. All methods are safe
// for concurrent use.
type Instance struct {
	svc    Service
	set    settings
	stdout io.Writer

	logID   atomic.Pointer[string] // the instance ID, once known, for every log line
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	tp      *sdktrace.TracerProvider
	tracer  trace.Tracer
	consul  *api.Client
	dyn     *Dynamic

	agentTransport *http.Transport

	coreOnce   sync.Once
	core       *clientCore // guarded by mu once created
	closeOnce  sync.Once
	clientOnce sync.Once
	defClient  *http.Client

	state      atomic.Int32  // stateStarting, stateReady, stateDraining
	registered atomic.Bool   // the agent has the registration (its check exists)
	regDone    chan struct{} // closed once registered (serving) or at once (a task)
	id         string        // set by Run before registration
	addr       string        // API listen address, set by Run
	adminAddr  string        // admin listen address, set by Run
	started    time.Time

	mu        sync.Mutex
	bg        sync.WaitGroup
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	onStop    []func(context.Context)
	runCalled bool
}

const (
	stateStarting int32 = iota
	stateReady
	stateDraining
)

// New reads the environment into the chassis settings and s.Config, and builds the
// instance's logger, metrics registry, tracer and agent client, without any network
// I/O. A bad environment is a *ConfigError listing every bad variable.
func New(s Service) (*Instance, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	in := &Instance{svc: s, stdout: s.Stdout}
	if in.stdout == nil {
		in.stdout = os.Stdout
	}
	var bad []*VarError
	for _, dst := range []any{&in.set, s.Config} {
		if dst == nil {
			continue
		}
		err := ParseEnv(dst, s.LookupEnv)
		var ce *ConfigError
		if errors.As(err, &ce) {
			bad = append(bad, ce.Vars...)
		} else if err != nil {
			return nil, err
		}
	}
	if len(bad) > 0 {
		return nil, &ConfigError{Vars: bad}
	}

	in.log = newLogger(in.stdout, in.set.LogFormat, in.set.LogLevel, &in.logID).With("service", s.Name)
	if s.Version != "" {
		in.log = in.log.With("version", s.Version)
	}

	in.reg = prometheus.NewRegistry()
	in.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in.metrics = newMetrics(in.reg, s.Name, s.Version)

	tp, err := newTracerProvider(in.set.TraceExporter, s.Name, s.Version)
	if err != nil {
		return nil, err
	}
	in.tp = tp
	in.tracer = tp.Tracer("github.com/wolke-platform/wolke/pkg/chassis")

	// Our own transport, so that Close can drop its idle connections (an agent
	// shutting down waits for connections that never carried a request).
	in.agentTransport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 64, // blocking queries: one per watched service, the config, locks
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	cfg := &api.Config{Address: in.set.agentURL.Host, Scheme: in.set.agentURL.Scheme, Token: in.set.Token, Transport: in.agentTransport}
	if in.consul, err = api.NewClient(cfg); err != nil {
		return nil, fmt.Errorf("chassis: agent client: %w", err)
	}
	prefix := in.set.ConfigPrefix
	if prefix == "" {
		prefix = "config/" + s.Name + "/"
	}
	in.dyn = newDynamic(in.consul, prefix, in.log, in.metrics)
	in.bgCtx, in.bgCancel = context.WithCancel(context.Background())
	in.regDone = make(chan struct{})
	return in, nil
}

// Name is the service's name.
func (in *Instance) Name() string { return in.svc.Name }

// Version is the service's version.
func (in *Instance) Version() string { return in.svc.Version }

// ID is the instance's ID in the catalog ("" before Run has bound its port).
func (in *Instance) ID() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.id
}

// Addr is the API's listen address, host:port ("" before Run has bound it).
func (in *Instance) Addr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

// AdminAddr is the admin port's listen address ("" before Run has bound it).
func (in *Instance) AdminAddr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.adminAddr
}

// Logger is the instance's JSON logger. Log with the request's context (InfoContext
// and friends) to get its request_id, trace_id and span_id on the line.
func (in *Instance) Logger() *slog.Logger { return in.log }

// Metrics is the instance's own Prometheus registry, served at /metrics on the admin
// port; register the service's own metrics here.
func (in *Instance) Metrics() prometheus.Registerer { return in.reg }

// TracerProvider is the instance's OpenTelemetry tracer provider (exporting per
// OTEL_TRACES_EXPORTER), for spans of the service's own.
func (in *Instance) TracerProvider() trace.TracerProvider { return in.tp }

// Consul is the client of the local agent, for the KV store, sessions and the catalog.
func (in *Instance) Consul() *api.Client { return in.consul }

// Dynamic is the instance's dynamic configuration (the KV prefix config/<name>/).
func (in *Instance) Dynamic() *Dynamic { return in.dyn }

// Ready reports whether the instance is ready to serve: started, not draining, every
// required service has a passing instance and every check passes. The map names the
// conditions that fail and why.
func (in *Instance) Ready(ctx context.Context) (bool, map[string]string) {
	switch in.state.Load() {
	case stateStarting:
		return false, map[string]string{"state": "starting"}
	case stateDraining:
		return false, map[string]string{"state": "draining"}
	}
	var failing map[string]string
	fail := func(k, v string) {
		if failing == nil {
			failing = map[string]string{}
		}
		failing[k] = v
	}
	for _, name := range in.svc.Requires {
		n, err := in.clientCore().healthy(ctx, name)
		if err != nil {
			fail(name, err.Error())
		} else if n == 0 {
			fail(name, "no passing instance")
		}
	}
	names := make([]string, 0, len(in.svc.Checks))
	for name := range in.svc.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := in.svc.Checks[name](cctx)
		cancel()
		if err != nil {
			fail(name, err.Error())
		}
	}
	return failing == nil, failing
}

// Go runs fn in the background with a context that is cancelled when the instance
// starts shutting down (before it deregisters); Run waits for fn to return before it
// returns, within the drain deadline.
func (in *Instance) Go(fn func(ctx context.Context)) {
	in.bg.Add(1)
	go func() {
		defer in.bg.Done()
		fn(in.bgCtx)
	}()
}

// OnShutdown registers fn to run after the API has drained, before Run returns (in
// reverse order of registration, like defer), with a context bounded by the drain
// deadline: close connections, flush buffers.
func (in *Instance) OnShutdown(fn func(ctx context.Context)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.onStop = append(in.onStop, fn)
}

// Close releases what an instance holds without serving: the catalog watches and
// connections of its clients, its background work and buffered spans. Run closes the
// instance itself; call Close for an instance made with New that is never run (a tool
// or test that only uses its clients). Safe to call more than once.
func (in *Instance) Close() {
	in.closeOnce.Do(func() {
		in.bgCancel()
		in.bg.Wait()
		in.mu.Lock()
		core := in.core
		in.mu.Unlock()
		in.coreOnce.Do(func() {}) // no core after Close
		if core != nil {
			core.close()
		}
		in.agentTransport.CloseIdleConnections()
		in.flushTraces()
	})
}

// reqInfo is what the server middleware puts in a request's context.
type reqInfo struct {
	in *Instance
	id string
}

type reqKey struct{}

func reqInfoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqKey{}).(*reqInfo)
	return ri
}

// FromContext returns the Instance serving the request whose context ctx is (or
// derives from), or nil: handlers reach the logger, clients and dynamic
// configuration without closures.
func FromContext(ctx context.Context) *Instance {
	if ri := reqInfoFrom(ctx); ri != nil {
		return ri.in
	}
	return nil
}

// RequestID returns the ID of the request whose context ctx is (from its X-Request-Id
// header, else its trace ID), or "".
func RequestID(ctx context.Context) string {
	if ri := reqInfoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

package chassis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Run starts the service and returns when it has shut down: New, then Instance.Run.
// A bad environment is a *ConfigError; Main turns it into exit code 2.
func Run(ctx context.Context, s Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	if printInfo(s, s.Args) {
		return nil
	}
	in, err := New(s)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

// Run serves the instance until ctx ends or the process gets SIGTERM or SIGINT, then
// shuts it down gracefully and returns nil. With Service.Args naming a task, it runs
// the task instead (see Task). Run may be called once.
//
// Start: bind PORT and ADMIN_PORT (the admin port answers /health/live at once and
// /health/ready with 503 "starting"), load the dynamic configuration, call Setup,
// serve the API, register with the local agent (check passing if the instance is
// ready), wait until the catalog lists the instance and log "ready". The steps that
// need the agent retry for START_TIMEOUT.
//
// Shutdown, in this order, so that no client sees an error (RELIABILITY test 14):
//  1. /health/ready answers 503 "draining"; background work (Go, Elect) is cancelled.
//  2. The instance deregisters and waits until the catalog no longer lists it.
//  3. It keeps serving for DEREGISTER_WAIT more, so every client has seen the change.
//  4. It stops accepting connections and closes idle keep-alive ones; responses still
//     in flight carry Connection: close.
//  5. In-flight requests get DRAIN_TIMEOUT to finish (then their connections are
//     closed); background work and OnShutdown hooks get the same deadline.
//  6. The admin port closes, buffered spans are flushed and Run returns nil.
//
// A second SIGTERM or SIGINT during shutdown skips the remaining waits.
func (in *Instance) Run(ctx context.Context) error {
	in.mu.Lock()
	called := in.runCalled
	in.runCalled = true
	in.mu.Unlock()
	if called {
		return errors.New("chassis: Run called twice")
	}
	if len(in.svc.Args) > 0 {
		return in.command(ctx, in.svc.Args)
	}
	return in.serve(ctx)
}

func (in *Instance) serve(ctx context.Context) (err error) {
	in.started = time.Now()
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	defer in.Close()

	// Bind both ports first: a port in use fails the start before anything else.
	apiLn, err := net.Listen("tcp", net.JoinHostPort(in.set.BindAddr, strconv.Itoa(int(in.set.Port))))
	if err != nil {
		return fmt.Errorf("chassis: PORT: %w", err)
	}
	defer apiLn.Close()
	adminLn, err := net.Listen("tcp", net.JoinHostPort(in.set.BindAddr, strconv.Itoa(int(in.set.AdminPort))))
	if err != nil {
		return fmt.Errorf("chassis: ADMIN_PORT: %w", err)
	}
	defer adminLn.Close()
	port := apiLn.Addr().(*net.TCPAddr).Port
	id := in.set.ID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%s-%d", in.svc.Name, host, port)
	}
	in.mu.Lock()
	in.id, in.addr, in.adminAddr = id, apiLn.Addr().String(), adminLn.Addr().String()
	in.mu.Unlock()
	in.logID.Store(&id)

	errLog := slog.NewLogLogger(in.log.Handler(), slog.LevelWarn)
	adminSrv := &http.Server{Handler: in.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	serveErr := make(chan error, 2)
	go func() { serveErr <- serveUntilClosed(adminSrv, adminLn) }()
	defer adminSrv.Close()

	// From here on, a failed start must stop what it started.
	startCtx, cancelStart := context.WithTimeout(sigCtx, in.set.StartTimeout)
	defer cancelStart()
	defer func() {
		if err != nil {
			in.bgCancel()
			in.bg.Wait()
		}
	}()
	if err := retry(startCtx, func() error { return in.dyn.load(startCtx) }); err != nil {
		return fmt.Errorf("chassis: start: %w", err)
	}
	in.Go(in.dyn.watch)

	handler := in.svc.Handler
	if in.svc.Setup != nil {
		if handler, err = in.svc.Setup(startCtx, in); err != nil {
			return fmt.Errorf("chassis: setup: %w", err)
		}
	}
	apiSrv := &http.Server{
		Handler:           in.Handler(handler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // longer than the client's idle timeout
		ErrorLog:          errLog,
	}
	go func() { serveErr <- serveUntilClosed(apiSrv, apiLn) }()
	defer apiSrv.Close()

	in.state.Store(stateReady)
	ready, failing := in.Ready(startCtx)
	if err := in.register(startCtx, ready); err != nil {
		return fmt.Errorf("chassis: registering with the agent at %s: %w", in.set.agentURL.Host, err)
	}
	in.registered.Store(true)
	close(in.regDone)
	if ready {
		in.metrics.ready.Set(1)
	}
	// "ready" means discoverable: the agent pushes the registration to the catalog
	// at once, and this waits for it (milliseconds).
	if err := in.waitCatalog(startCtx); err != nil {
		in.log.Warn("the catalog does not list this instance yet", "error", err.Error())
	}
	in.Go(func(ctx context.Context) { in.keepRegistered(ctx, in.set.Reregister) })
	in.log.Info("ready", "addr", in.addr, "admin_addr", in.adminAddr, "startup_ms", time.Since(in.started).Milliseconds(),
		"passing", ready, "failing", failing)

	select {
	case <-sigCtx.Done():
	case err := <-serveErr:
		in.log.Error("server failed, shutting down", "error", err.Error())
	}
	return in.shutdown(ctx, apiSrv, adminSrv)
}

// serveUntilClosed serves until the server is shut down, which is not an error.
func serveUntilClosed(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (in *Instance) shutdown(parent context.Context, apiSrv, adminSrv *http.Server) error {
	begin := time.Now()
	reason := "signal"
	if parent.Err() != nil {
		reason = "context"
	}
	in.log.Info("shutting down", "reason", reason)

	// A second signal cuts the waits short.
	hurry, hurryCancel := context.WithCancel(context.Background())
	defer hurryCancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			in.log.Warn("second signal: skipping the remaining shutdown waits")
			hurryCancel()
		case <-hurry.Done():
		}
	}()

	// 1. Not ready; background work stops (leaders step down).
	in.state.Store(stateDraining)
	in.metrics.ready.Set(0)
	in.bgCancel()
	// Leaders get a moment to step down and release their locks themselves: once
	// deregistered, the check their sessions are bound to is gone, which invalidates
	// the sessions and puts the keys under lock-delay.
	bgDone := make(chan struct{})
	go func() { in.bg.Wait(); close(bgDone) }()
	stepDown, cancelStepDown := context.WithTimeout(hurry, min(2*time.Second, in.set.DrainTimeout))
	select {
	case <-bgDone:
	case <-stepDown.Done():
	}
	cancelStepDown()

	// 2. Deregister and wait until the catalog has dropped the instance.
	dctx, cancel := context.WithTimeout(hurry, 10*time.Second)
	took, err := in.deregister(dctx)
	cancel()
	if err != nil {
		in.log.Warn("deregistering failed; relying on the check and DEREGISTER_CRITICAL_AFTER", "error", err.Error())
	} else {
		in.log.Info("deregistered", "catalog_ms", took.Milliseconds())
	}

	// 3. Keep serving until every client has seen the change.
	sleepCtx(hurry, in.set.DeregisterWait)

	// 4–5. Stop accepting, drain.
	drainCtx, cancelDrain := context.WithTimeout(hurry, in.set.DrainTimeout)
	defer cancelDrain()
	apiSrv.SetKeepAlivesEnabled(false)
	if err := apiSrv.Shutdown(drainCtx); err != nil {
		in.log.Warn("drain deadline passed, closing the remaining connections", "error", err.Error())
		apiSrv.Close()
	} else {
		in.log.Info("drained", "since_signal_ms", time.Since(begin).Milliseconds())
	}
	select {
	case <-bgDone:
	case <-drainCtx.Done():
		in.log.Warn("background work did not stop before the drain deadline")
	}
	in.runOnShutdown(drainCtx)

	// 6. Admin port, clients, traces (Close, deferred by serve).
	actx, cancelAdmin := context.WithTimeout(context.Background(), time.Second)
	defer cancelAdmin()
	_ = adminSrv.Shutdown(actx)
	in.log.Info("stopped", "shutdown_ms", time.Since(begin).Milliseconds())
	return nil
}

func (in *Instance) runOnShutdown(ctx context.Context) {
	in.mu.Lock()
	hooks := slices.Clone(in.onStop)
	in.mu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if p := recover(); p != nil {
					in.log.Error("shutdown hook panicked", "panic", fmt.Sprint(p))
				}
			}()
			hooks[i](ctx)
		}()
	}
}

func (in *Instance) flushTraces() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := in.tp.Shutdown(ctx); err != nil {
		in.log.Warn("flushing traces failed", "error", err.Error())
	}
}

package confsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Config configures a [Runner]. Zero fields take the defaults their comments give.
type Config struct {
	// Client reads from the agent. Required.
	Client *api.Client
	// Templates to render; at least one, each with its own Destination.
	Templates []TemplateConfig
	// Wait delays renders after changes (quiescence); see [Wait]. It applies to changes
	// after a template's first complete render: the first render happens as soon as its
	// data is there. Ignored by [Runner.Once].
	Wait Wait
	// WaitTime bounds each blocking query; 0 means DefaultWaitTime.
	WaitTime time.Duration
	// Backoff gives the retry delay after failed queries; nil means DefaultBackoff.
	Backoff func(failures int) time.Duration
	// CommandTimeout bounds a reload command; the command is killed when it runs longer.
	// 0 means 30 s (consul-template's exec timeout).
	CommandTimeout time.Duration
	// Stdout and Stderr receive the reload commands' output; nil discards it.
	Stdout, Stderr io.Writer
	// Logger receives renders, command failures and query errors; nil discards them.
	Logger *slog.Logger
	// Getenv serves the env function; nil means os.Getenv.
	Getenv func(string) string
}

// ErrConfig is wrapped by the errors of [Config.Validate].
var ErrConfig = errors.New("confsync: invalid configuration")

// Validate reports a configuration the runner cannot use; the error wraps ErrConfig.
func (c Config) Validate() error {
	if c.Client == nil {
		return fmt.Errorf("%w: no client", ErrConfig)
	}
	if len(c.Templates) == 0 {
		return fmt.Errorf("%w: no templates", ErrConfig)
	}
	seen := map[string]string{}
	for _, t := range c.Templates {
		if t.Source == "" || t.Destination == "" {
			return fmt.Errorf("%w: template %q:%q: source and destination are required", ErrConfig, t.Source, t.Destination)
		}
		if prev, dup := seen[t.Destination]; dup {
			return fmt.Errorf("%w: templates %s and %s both write %s", ErrConfig, prev, t.Source, t.Destination)
		}
		seen[t.Destination] = t.Source
	}
	if err := c.Wait.Validate(); err != nil {
		return fmt.Errorf("%w: wait: %v", ErrConfig, err)
	}
	return nil
}

// maxDeps is where consul-template starts warning: every dependency is a blocking query
// held open against the agent.
const maxDeps = 128

// Runner keeps templates rendered. Each template's dependencies are found while it
// renders: a function asking for data that has not arrived registers a dependency and
// returns a zero value, and the render counts as incomplete and is not written. Every
// dependency gets one [Watch] (shared by the templates that read it); when its data
// arrives or changes, the templates reading it render again. Dependencies no template
// reads any more are stopped.
//
// A complete render whose output differs from the destination's content replaces the
// file atomically and then runs the template's command (once per render pass even when
// several templates share the same command). A failing command is logged, not fatal.
type Runner struct {
	cfg       Config
	templates []*tmpl
	logger    *slog.Logger
	getenv    func(string) string

	data    map[dep]any        // the latest data of each running dependency that has answered
	active  map[dep]*activeDep // running dependencies
	gen     uint64
	updates chan update
	wg      sync.WaitGroup
	warned  bool
}

type activeDep struct {
	cancel context.CancelFunc
	gen    uint64
}

// update is a dependency's new data, sent by its Watch goroutine.
type update struct {
	dep    dep
	gen    uint64
	result any
}

// New validates cfg and parses the templates; it takes ownership of cfg. An error
// wrapping ErrParse means a template does not parse.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:     cfg,
		logger:  cfg.Logger,
		getenv:  cfg.Getenv,
		data:    map[dep]any{},
		active:  map[dep]*activeDep{},
		updates: make(chan update),
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.getenv == nil {
		r.getenv = os.Getenv
	}
	if r.cfg.CommandTimeout <= 0 {
		r.cfg.CommandTimeout = 30 * time.Second
	}
	for _, tc := range cfg.Templates {
		tp, err := parseTemplate(tc)
		if err != nil {
			return nil, err
		}
		r.templates = append(r.templates, tp)
	}
	return r, nil
}

// Run renders the templates and keeps them up to date until ctx is done; it then stops
// its queries and returns nil. Errors while it runs (a template that fails to execute, a
// destination that cannot be written, an agent that cannot be reached) are logged and
// retried on the next change.
func (r *Runner) Run(ctx context.Context) error { return r.loop(ctx, false) }

// Once renders every template once, waiting as long as it takes for the data each needs
// (a key read with key blocks until it exists), writes the changed destinations, runs
// their commands and returns. It returns the first execution or write error, or
// ctx.Err() when ctx ends first.
func (r *Runner) Once(ctx context.Context) error { return r.loop(ctx, true) }

func (r *Runner) loop(ctx context.Context, once bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.wg.Wait()
		r.active, r.data = map[dep]*activeDep{}, map[dep]any{}
	}()
	now := time.Now()
	for _, tp := range r.templates {
		tp.due = now
	}
	for {
		if err := r.renderDue(ctx, once); err != nil {
			return err
		}
		r.syncDeps(ctx)
		if once && r.allWritten() {
			return nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if due, ok := r.nextDue(); ok {
			timer = time.NewTimer(time.Until(due))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			if once {
				return ctx.Err()
			}
			return nil
		case u := <-r.updates:
			r.apply(u, once)
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// renderDue renders every template whose time has come and runs the commands of those
// whose destination changed. In once mode an error ends the runner.
func (r *Runner) renderDue(ctx context.Context, once bool) error {
	now := time.Now()
	var commands []string
	for _, tp := range r.templates {
		if tp.due.IsZero() || now.Before(tp.due) {
			continue
		}
		tp.due, tp.burst = time.Time{}, time.Time{}
		out, complete, err := tp.render(r.data, r.getenv)
		if !complete {
			r.logger.Debug("template waiting for data", "template", tp.cfg.Source, "dependencies", len(tp.deps))
			continue
		}
		if err == nil {
			var changed bool
			changed, err = writeFileAtomic(tp.cfg.Destination, out)
			if err == nil {
				tp.written = true
				if changed {
					r.logger.Info("rendered", "template", tp.cfg.Source, "destination", tp.cfg.Destination)
					if tp.cfg.Command != "" && !slices.Contains(commands, tp.cfg.Command) {
						commands = append(commands, tp.cfg.Command)
					}
				}
			} else {
				err = fmt.Errorf("writing %s: %w", tp.cfg.Destination, err)
			}
		}
		if err != nil {
			if once {
				return err
			}
			r.logger.Error("template failed; retrying on the next change", "template", tp.cfg.Source, "error", err)
		}
	}
	for _, c := range commands {
		r.runCommand(ctx, c)
	}
	return nil
}

// runCommand runs a reload command through sh -c and logs how it ended.
func (r *Runner) runCommand(ctx context.Context, command string) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = r.cfg.Stdout, r.cfg.Stderr
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.logger.Info("command ran", "command", command, "duration", time.Since(start).Round(time.Millisecond))
	case cctx.Err() != nil && ctx.Err() == nil:
		r.logger.Error("command timed out and was killed", "command", command, "timeout", r.cfg.CommandTimeout)
	case errors.As(err, &ee):
		r.logger.Error("command failed", "command", command, "exit_code", ee.ExitCode(), "error", err)
	default:
		r.logger.Error("command did not run", "command", command, "error", err)
	}
}

// apply stores a dependency's new data and schedules the templates that read it.
func (r *Runner) apply(u update, once bool) {
	a, ok := r.active[u.dep]
	if !ok || a.gen != u.gen {
		return // from a dependency stopped meanwhile
	}
	r.data[u.dep] = u.result
	now := time.Now()
	for _, tp := range r.templates {
		if _, reads := tp.deps[u.dep]; reads {
			r.schedule(tp, now, once)
		}
	}
}

// schedule sets when tp renders after a change at now: at once before its first
// complete render (or without -wait), else after Wait.Min of calm but no later than
// Wait.Max after the burst's first change.
func (r *Runner) schedule(tp *tmpl, now time.Time, once bool) {
	w := r.cfg.Wait
	if once || !tp.written || w.Min == 0 && w.Max == 0 {
		tp.due = now
		return
	}
	if tp.due.IsZero() {
		tp.burst = now
	}
	tp.due = now.Add(w.Min)
	if limit := tp.burst.Add(w.Max); tp.due.After(limit) {
		tp.due = limit
	}
}

func (r *Runner) nextDue() (time.Time, bool) {
	var next time.Time
	for _, tp := range r.templates {
		if !tp.due.IsZero() && (next.IsZero() || tp.due.Before(next)) {
			next = tp.due
		}
	}
	return next, !next.IsZero()
}

func (r *Runner) allWritten() bool {
	for _, tp := range r.templates {
		if !tp.written {
			return false
		}
	}
	return true
}

// syncDeps starts a Watch for every dependency a template reads that has none, and stops
// those no template reads any more.
func (r *Runner) syncDeps(ctx context.Context) {
	want := map[dep]struct{}{}
	for _, tp := range r.templates {
		for d := range tp.deps {
			want[d] = struct{}{}
		}
	}
	for d, a := range r.active {
		if _, ok := want[d]; !ok {
			a.cancel()
			delete(r.active, d)
			delete(r.data, d)
		}
	}
	for d := range want {
		if _, ok := r.active[d]; !ok {
			r.start(ctx, d)
		}
	}
	if len(r.active) > maxDeps && !r.warned {
		r.warned = true
		r.logger.Warn("many dependencies: each holds a blocking query open against the agent", "dependencies", len(r.active), "threshold", maxDeps)
	}
}

func (r *Runner) start(ctx context.Context, d dep) {
	r.gen++
	gen := r.gen
	dctx, cancel := context.WithCancel(ctx)
	r.active[d] = &activeDep{cancel: cancel, gen: gen}
	w := &Watch{
		Query: d.query(r.cfg.Client),
		Handler: func(_ uint64, result any) {
			select {
			case r.updates <- update{dep: d, gen: gen, result: result}:
			case <-dctx.Done():
			}
		},
		WaitTime: r.cfg.WaitTime,
		Backoff:  r.cfg.Backoff,
		Logger:   r.logger,
		Name:     d.String(),
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		w.Run(dctx)
	}()
}

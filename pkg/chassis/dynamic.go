package chassis

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Dynamic is a service's dynamic configuration: the keys under its KV prefix
// (config/<service>/ unless CONFIG_PREFIX says otherwise), watched with blocking
// queries while the instance runs, so that `wolke kv put config/hello/greeting hi`
// changes a running service within milliseconds, without a restart.
//
// Declare each value once, with its key (relative to the prefix), its default and
// optional validators, and read it with Get wherever it is used:
//
//	limit := in.Dynamic().Int("max_items", 100, chassis.Between(1, 1000))
//	...
//	if n > limit.Get() { ... }
//
// A value that does not parse or fails a validator is rejected: the instance logs a
// warning naming the key, the value and the reason, counts it in
// chassis_dynamic_config_rejected_total and keeps the previous value. A deleted key
// returns to the default. Values declared before Run get their stored value when Run
// loads the prefix (before Setup); values declared later get it at once.
type Dynamic struct {
	consul *api.Client
	prefix string
	log    *slog.Logger
	m      *metrics

	mu     sync.Mutex
	raw    map[string]string // the prefix's current keys (without the prefix) and values
	vars   map[string][]dynVar
	index  uint64
	loaded bool
}

// dynVar is a declared value; update is called with d.mu held, in the watcher.
type dynVar interface {
	update(raw string, present bool) (callbacks func())
	display() string
}

func newDynamic(c *api.Client, prefix string, log *slog.Logger, m *metrics) *Dynamic {
	return &Dynamic{consul: c, prefix: prefix, log: log, m: m, raw: map[string]string{}, vars: map[string][]dynVar{}}
}

// Prefix is the KV prefix the values live under (with its trailing slash).
func (d *Dynamic) Prefix() string { return d.prefix }

// Value is one dynamic configuration value of type T. Get is a single atomic load.
type Value[T any] struct {
	key      string
	def      T
	parse    func(string) (T, error)
	validate []func(T) error
	d        *Dynamic

	cur atomic.Pointer[T]
	// Guarded by d.mu:
	lastRaw     string
	lastPresent bool
	callbacks   []func(T)
}

// Get returns the current value.
func (v *Value[T]) Get() T { return *v.cur.Load() }

// Key returns the value's key, relative to the prefix.
func (v *Value[T]) Key() string { return v.key }

// OnChange registers fn to be called with every new value after it has been
// accepted (Get already returns it): on a KV change, on deletion (with the default),
// on the initial load when the stored value differs from the default. Callbacks run
// one at a time on the watcher's goroutine, so a slow one delays later changes; a
// panic in one is logged and does not stop the watcher.
func (v *Value[T]) OnChange(fn func(T)) {
	v.d.mu.Lock()
	defer v.d.mu.Unlock()
	v.callbacks = append(v.callbacks, fn)
}

func (v *Value[T]) update(raw string, present bool) func() {
	if raw == v.lastRaw && present == v.lastPresent {
		return nil
	}
	v.lastRaw, v.lastPresent = raw, present
	next := v.def
	if present {
		val, err := v.parse(raw)
		if err == nil {
			for _, check := range v.validate {
				if err = check(val); err != nil {
					break
				}
			}
		}
		if err != nil {
			v.d.m.dynRejected.WithLabelValues(v.key).Inc()
			v.d.log.Warn("dynamic config value rejected, keeping the previous one",
				"key", v.d.prefix+v.key, "value", raw, "error", err.Error(), "kept", fmt.Sprint(v.Get()))
			return nil
		}
		next = val
		v.d.log.Info("dynamic config value changed", "key", v.d.prefix+v.key, "value", raw)
	} else {
		v.d.log.Info("dynamic config value deleted, back to the default", "key", v.d.prefix+v.key, "default", fmt.Sprint(v.def))
	}
	v.cur.Store(&next)
	cbs := append([]func(T){}, v.callbacks...)
	if len(cbs) == 0 {
		return nil
	}
	return func() {
		for _, fn := range cbs {
			func() {
				defer func() {
					if p := recover(); p != nil {
						v.d.log.Error("dynamic config callback panicked", "key", v.d.prefix+v.key, "panic", fmt.Sprint(p))
					}
				}()
				fn(next)
			}()
		}
	}
}

func (v *Value[T]) display() string { return fmt.Sprint(v.Get()) }

// Var declares a dynamic value of any type, parsed from the stored string by parse:
// the general form behind String, Int, Float, Bool and Duration. Declaring a key
// again with the same type returns the first declaration (its default and validators
// stay); declare values once, in Setup, rather than per request.
func Var[T any](d *Dynamic, key string, def T, parse func(string) (T, error), validate ...func(T) error) *Value[T] {
	d.mu.Lock()
	for _, old := range d.vars[key] {
		if v, ok := old.(*Value[T]); ok {
			d.mu.Unlock()
			return v
		}
	}
	v := &Value[T]{key: key, def: def, parse: parse, validate: validate, d: d}
	v.cur.Store(&def)
	d.vars[key] = append(d.vars[key], v)
	raw, present := d.raw[key]
	cb := v.update(raw, present)
	d.mu.Unlock()
	_ = cb // callbacks cannot be registered yet
	return v
}

// String declares a string value; the stored bytes are used as they are.
func (d *Dynamic) String(key, def string, validate ...func(string) error) *Value[string] {
	return Var(d, key, def, func(s string) (string, error) { return s, nil }, validate...)
}

// Int declares an integer value (base 10, surrounding space ignored).
func (d *Dynamic) Int(key string, def int, validate ...func(int) error) *Value[int] {
	return Var(d, key, def, func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("not an integer")
		}
		return n, nil
	}, validate...)
}

// Float declares a floating-point value.
func (d *Dynamic) Float(key string, def float64, validate ...func(float64) error) *Value[float64] {
	return Var(d, key, def, func(s string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return 0, fmt.Errorf("not a number")
		}
		return f, nil
	}, validate...)
}

// Bool declares a boolean value (true/false, 1/0, t/f).
func (d *Dynamic) Bool(key string, def bool, validate ...func(bool) error) *Value[bool] {
	return Var(d, key, def, func(s string) (bool, error) {
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, fmt.Errorf("not a boolean")
		}
		return b, nil
	}, validate...)
}

// Duration declares a duration value in Go's syntax ("250ms", "1m30s").
func (d *Dynamic) Duration(key string, def time.Duration, validate ...func(time.Duration) error) *Value[time.Duration] {
	return Var(d, key, def, func(s string) (time.Duration, error) {
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("not a duration")
		}
		return v, nil
	}, validate...)
}

// Between returns a validator accepting lo ≤ v ≤ hi.
func Between[T int | int64 | float64 | time.Duration](lo, hi T) func(T) error {
	return func(v T) error {
		if v < lo || v > hi {
			return fmt.Errorf("%v is outside [%v, %v]", v, lo, hi)
		}
		return nil
	}
}

// OneOf returns a validator accepting only the given strings.
func OneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// load reads the prefix once (Run calls it before Setup).
func (d *Dynamic) load(ctx context.Context) error {
	pairs, meta, err := d.consul.KV().List(d.prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("reading dynamic configuration under %s: %w", d.prefix, err)
	}
	d.apply(pairs, meta.LastIndex)
	return nil
}

// watch follows the prefix with blocking queries until ctx ends.
func (d *Dynamic) watch(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		d.mu.Lock()
		idx := d.index
		d.mu.Unlock()
		pairs, meta, err := d.consul.KV().List(d.prefix, (&api.QueryOptions{WaitIndex: idx, WaitTime: 55 * time.Second}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("watching dynamic configuration failed, retrying", "prefix", d.prefix, "error", err.Error(), "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff + rand.N(backoff/2)):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		d.apply(pairs, meta.LastIndex)
	}
}

// apply installs a new listing of the prefix and runs the callbacks of what changed.
func (d *Dynamic) apply(pairs api.KVPairs, index uint64) {
	raw := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k := strings.TrimPrefix(p.Key, d.prefix)
		if k == "" || strings.HasSuffix(k, "/") {
			continue
		}
		raw[k] = string(p.Value)
	}
	var cbs []func()
	d.mu.Lock()
	if index < d.index {
		index = 0 // the index went backwards (a restored snapshot): start over
	}
	d.index, d.raw, d.loaded = index, raw, true
	for key, vs := range d.vars {
		val, present := raw[key]
		for _, v := range vs {
			if cb := v.update(val, present); cb != nil {
				cbs = append(cbs, cb)
			}
		}
	}
	d.mu.Unlock()
	for _, cb := range cbs {
		cb()
	}
}

// snapshot returns the declared values as strings, for /info.
func (d *Dynamic) snapshot() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.vars))
	for k, vs := range d.vars {
		out[k] = vs[0].display()
	}
	return out
}

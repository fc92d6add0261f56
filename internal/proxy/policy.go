package proxy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/balance"
	"github.com/wolke-platform/wolke/internal/reqvalidate"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// Policy is how the gateway treats one service: its routes and its resilience
// settings. It comes from DefaultPolicy, overridden by the static configuration file
// and then by the service's tags or Meta, so a team can tune its own service without
// touching the gateway.
type Policy struct {
	Routes []RouteSpec `json:"routes,omitempty"`

	LB         string `json:"lb,omitempty"`          // balance.New name
	HashHeader string `json:"hash_header,omitempty"` // consistent hashing key: a header...
	HashCookie string `json:"hash_cookie,omitempty"` // ...or a cookie

	ConnectTimeout Duration `json:"connect_timeout,omitempty"`
	HeaderTimeout  Duration `json:"header_timeout,omitempty"` // per try: until the response header
	Timeout        Duration `json:"timeout,omitempty"`        // whole request, all tries
	Attempts       int      `json:"attempts,omitempty"`       // tries, the first included

	OutlierFailures      int      `json:"outlier_failures,omitempty"`
	OutlierBaseEjection  Duration `json:"outlier_base_ejection,omitempty"`
	OutlierMaxEjection   Duration `json:"outlier_max_ejection,omitempty"`
	OutlierMaxPercent    int      `json:"outlier_max_percent,omitempty"`
	BreakerFailureRatio  float64  `json:"breaker_failure_ratio,omitempty"`
	BreakerMinRequests   int      `json:"breaker_min_requests,omitempty"`
	BreakerOpenTimeout   Duration `json:"breaker_open_timeout,omitempty"`
	RetryBudgetRatio     float64  `json:"retry_budget_ratio,omitempty"`
	RetryBudgetMinPerSec float64  `json:"retry_budget_min_per_sec,omitempty"`

	// Fault injection (chaos rehearsal), off unless given.
	Fault *FaultPolicy `json:"fault,omitempty"`
	// RateLimit is a token bucket per route or per client key, off unless given.
	RateLimit *RateLimitPolicy `json:"rate_limit,omitempty"`
	// Concurrency is the adaptive concurrency limit, on unless disabled.
	Concurrency *ConcurrencyPolicy `json:"concurrency,omitempty"`
	// Auth authenticates clients (JWT, API keys, Basic, forward auth); only from the
	// configuration file or a policy document, never from tags, which any service
	// registrant can set.
	Auth *authn.Policy `json:"auth,omitempty"`
	// Validation refuses malformed requests before they reach the service.
	Validation *reqvalidate.Policy `json:"validation,omitempty"`
	// Cache answers GET and HEAD from the gateway's shared HTTP cache, following the
	// service's Cache-Control (RFC 9111).
	Cache *CachePolicy `json:"cache,omitempty"`
}

// CachePolicy turns the shared cache on for a service.
type CachePolicy struct {
	Enabled bool `json:"enabled"`
}

// RateLimitPolicy limits a route's request rate.
type RateLimitPolicy struct {
	Rate  float64 `json:"rate"`            // requests per second
	Burst int     `json:"burst,omitempty"` // bucket size, default the rate (at least 1)
	// Key says whose bucket a request takes from: "route" (default: one for all),
	// "ip", "header:<name>", "identity" (the authenticated client) or "claim:<name>"
	// (a JWT claim).
	Key string `json:"key,omitempty"`
	// Cluster makes Rate the limit of all live gateways together: each enforces
	// Rate ÷ live gateways, re-computed as gateways come and go.
	Cluster bool `json:"cluster,omitempty"`
}

func (r *RateLimitPolicy) validate() error {
	switch {
	case r.Rate <= 0 || r.Rate > 1e9:
		return fmt.Errorf("rate_limit: rate must be a positive number of requests per second")
	case r.Burst < 0:
		return fmt.Errorf("rate_limit: burst must not be negative")
	}
	switch k := r.Key; {
	case k == "", k == "route", k == "ip", k == "identity":
	case strings.HasPrefix(k, "header:") && len(k) > len("header:"):
	case strings.HasPrefix(k, "claim:") && len(k) > len("claim:"):
	default:
		return fmt.Errorf("rate_limit: key %q: want route, ip, header:<name>, identity or claim:<name>", k)
	}
	return nil
}

// ConcurrencyPolicy tunes the adaptive concurrency limit; it needs no tuning.
type ConcurrencyPolicy struct {
	Disabled bool `json:"disabled,omitempty"`
	MinLimit int  `json:"min_limit,omitempty"`
	MaxLimit int  `json:"max_limit,omitempty"`
}

// FaultPolicy delays or aborts a share of a route's requests, so that teams can
// rehearse failures with their real clients.
type FaultPolicy struct {
	DelayPercent float64  `json:"delay_percent,omitempty"` // share of requests delayed, 0..100
	Delay        Duration `json:"delay,omitempty"`
	AbortPercent float64  `json:"abort_percent,omitempty"` // share of requests answered with AbortStatus, 0..100
	AbortStatus  int      `json:"abort_status,omitempty"`  // default 503
}

func (f *FaultPolicy) validate() error {
	switch {
	case f.DelayPercent < 0 || f.DelayPercent > 100 || f.AbortPercent < 0 || f.AbortPercent > 100:
		return fmt.Errorf("fault: percentages must be 0..100")
	case f.DelayPercent > 0 && f.Delay <= 0:
		return fmt.Errorf("fault: delay_percent needs a positive delay")
	case f.Delay < 0 || time.Duration(f.Delay) > time.Hour:
		return fmt.Errorf("fault: delay must be 0..1h")
	case f.AbortStatus != 0 && (f.AbortStatus < 200 || f.AbortStatus > 599):
		return fmt.Errorf("fault: abort_status must be 200..599")
	}
	return nil
}

// RouteSpec says which requests reach a service.
type RouteSpec struct {
	Host        string `json:"host,omitempty"`   // "" matches any Host
	Prefix      string `json:"prefix,omitempty"` // path prefix, matched at a segment boundary
	StripPrefix bool   `json:"strip_prefix"`
	Priority    int    `json:"priority,omitempty"`
}

// Duration is a time.Duration that reads and writes Go's duration syntax in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("duration must be a string like \"2s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// DefaultPolicy is the policy of a service that says nothing about itself. The
// timeouts fit a LAN: a connect that takes a second is a dead host, not a slow one.
func DefaultPolicy() Policy {
	return Policy{
		LB:                   "p2c",
		ConnectTimeout:       Duration(time.Second),
		HeaderTimeout:        Duration(15 * time.Second),
		Timeout:              Duration(30 * time.Second),
		Attempts:             3,
		OutlierFailures:      5,
		OutlierBaseEjection:  Duration(30 * time.Second),
		OutlierMaxEjection:   Duration(300 * time.Second),
		OutlierMaxPercent:    50,
		BreakerFailureRatio:  0.5,
		BreakerMinRequests:   20,
		BreakerOpenTimeout:   Duration(5 * time.Second),
		RetryBudgetRatio:     0.2,
		RetryBudgetMinPerSec: 10,
	}
}

// Validate reports the first thing wrong with p.
func (p Policy) Validate() error {
	if _, err := balance.New(p.LB); err != nil {
		return err
	}
	switch {
	case p.ConnectTimeout <= 0, p.HeaderTimeout <= 0, p.Timeout <= 0:
		return fmt.Errorf("timeouts must be positive")
	case p.Attempts < 1 || p.Attempts > 10:
		return fmt.Errorf("attempts must be 1..10, got %d", p.Attempts)
	case p.OutlierFailures < 1:
		return fmt.Errorf("outlier_failures must be at least 1")
	case p.OutlierBaseEjection <= 0 || p.OutlierMaxEjection < p.OutlierBaseEjection:
		return fmt.Errorf("outlier ejection times must be positive, max >= base")
	case p.OutlierMaxPercent < 0 || p.OutlierMaxPercent > 100:
		return fmt.Errorf("outlier_max_percent must be 0..100")
	case p.BreakerFailureRatio <= 0 || p.BreakerFailureRatio > 1:
		return fmt.Errorf("breaker_failure_ratio must be in (0, 1]")
	case p.BreakerMinRequests < 1 || p.BreakerOpenTimeout <= 0:
		return fmt.Errorf("breaker_min_requests and breaker_open_timeout must be positive")
	case p.RetryBudgetRatio < 0 || p.RetryBudgetMinPerSec < 0:
		return fmt.Errorf("retry budget must not be negative")
	}
	for _, r := range p.Routes {
		if r.Prefix == "" || r.Prefix[0] != '/' {
			return fmt.Errorf("route prefix %q must start with /", r.Prefix)
		}
	}
	if p.Fault != nil {
		if err := p.Fault.validate(); err != nil {
			return err
		}
	}
	if p.RateLimit != nil {
		if err := p.RateLimit.validate(); err != nil {
			return err
		}
	}
	if p.Auth != nil {
		if err := p.Auth.Validate(); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if p.Validation != nil {
		if err := p.Validation.Validate(); err != nil {
			return fmt.Errorf("validation: %w", err)
		}
	}
	if c := p.Concurrency; c != nil && (c.MinLimit < 0 || c.MaxLimit < 0 || c.MinLimit > max(c.MaxLimit, 1000) ||
		(c.MaxLimit > 0 && c.MaxLimit < c.MinLimit)) {
		return fmt.Errorf("concurrency: limits must be positive, max >= min (min at most 1000 without a max)")
	}
	return nil
}

// tagKeys are the settings a service may give in its tags ("wolke.http.path=/cart")
// or Meta. Consul's Meta keys allow no dots, so Meta spells them with underscores
// ("wolke_http_path"); both spellings normalise to the same key.
var tagKeys = map[string]bool{
	"wolke.http.path": true, "wolke.http.host": true, "wolke.http.strip-prefix": true,
	"wolke.http.priority": true, "wolke.http.enable": true,
	"wolke.lb": true, "wolke.lb.hash-header": true, "wolke.lb.hash-cookie": true,
	"wolke.timeout.connect": true, "wolke.timeout.header": true, "wolke.timeout": true,
	"wolke.retry.attempts": true, "wolke.outlier.failures": true,
	"wolke.outlier.base-ejection": true, "wolke.breaker.failure-ratio": true,
	"wolke.breaker.min-requests": true, "wolke.breaker.open-timeout": true,
	"wolke.ratelimit": true, "wolke.ratelimit.burst": true, "wolke.ratelimit.key": true,
	"wolke.ratelimit.cluster": true, "wolke.concurrency": true, "wolke.cache": true,
}

func normKey(k string) string {
	return strings.NewReplacer("_", ".", "-", ".").Replace(strings.ToLower(k))
}

var normTagKeys = func() map[string]string {
	m := make(map[string]string, len(tagKeys))
	for k := range tagKeys {
		m[normKey(k)] = k
	}
	return m
}()

// serviceSettings gathers the wolke.* settings of a service's instances. Instances
// may disagree during a rolling deploy; the one with the smallest ID wins, so every
// gateway instance decides the same way.
func serviceSettings(insts []servicewatch.Instance) map[string]string {
	sorted := append([]servicewatch.Instance(nil), insts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	out := map[string]string{}
	set := func(k, v string) {
		if key, ok := normTagKeys[normKey(k)]; ok {
			if _, seen := out[key]; !seen {
				out[key] = v
			}
		}
	}
	for _, in := range sorted {
		for _, t := range in.Tags {
			if k, v, ok := strings.Cut(t, "="); ok && strings.HasPrefix(k, "wolke.") {
				set(k, v)
			}
		}
		for k, v := range in.Meta {
			if strings.HasPrefix(strings.ToLower(k), "wolke") {
				set(k, v)
			}
		}
	}
	return out
}

// servicePolicy applies a service's settings to base. The default routes are
// /<service>/... (prefix stripped) and Host <service>.<domain>; a path or host
// setting replaces both with the one route it names. A bad setting is reported and
// skipped, so one typo in a tag does not take a service off the gateway.
func servicePolicy(name, domain string, base Policy, settings map[string]string) (Policy, bool, []error) {
	p := base
	var errs []error
	bad := func(k, v string, err error) { errs = append(errs, fmt.Errorf("%s: tag %s=%q: %v", name, k, v, err)) }
	dur := func(k string, dst *Duration) {
		if v, ok := settings[k]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				bad(k, v, fmt.Errorf("want a positive duration"))
				return
			}
			*dst = Duration(d)
		}
	}
	num := func(k string, dst *int, lo, hi int) {
		if v, ok := settings[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				bad(k, v, fmt.Errorf("want an integer in %d..%d", lo, hi))
				return
			}
			*dst = n
		}
	}
	enabled := true
	if v, ok := settings["wolke.http.enable"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("wolke.http.enable", v, err)
		} else {
			enabled = b
		}
	}
	if v, ok := settings["wolke.lb"]; ok {
		if _, err := balance.New(v); err != nil {
			bad("wolke.lb", v, err)
		} else {
			p.LB = v
		}
	}
	if v, ok := settings["wolke.lb.hash-header"]; ok {
		p.HashHeader = v
	}
	if v, ok := settings["wolke.lb.hash-cookie"]; ok {
		p.HashCookie = v
	}
	dur("wolke.timeout.connect", &p.ConnectTimeout)
	dur("wolke.timeout.header", &p.HeaderTimeout)
	dur("wolke.timeout", &p.Timeout)
	num("wolke.retry.attempts", &p.Attempts, 1, 10)
	num("wolke.outlier.failures", &p.OutlierFailures, 1, 1000)
	dur("wolke.outlier.base-ejection", &p.OutlierBaseEjection)
	if p.OutlierMaxEjection < p.OutlierBaseEjection {
		p.OutlierMaxEjection = p.OutlierBaseEjection
	}
	num("wolke.breaker.min-requests", &p.BreakerMinRequests, 1, 1_000_000)
	dur("wolke.breaker.open-timeout", &p.BreakerOpenTimeout)
	if v, ok := settings["wolke.breaker.failure-ratio"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			bad("wolke.breaker.failure-ratio", v, fmt.Errorf("want a number in (0, 1]"))
		} else {
			p.BreakerFailureRatio = f
		}
	}

	if v, ok := settings["wolke.ratelimit"]; ok {
		rl := &RateLimitPolicy{}
		if p.RateLimit != nil {
			*rl = *p.RateLimit
		}
		f, err := strconv.ParseFloat(strings.TrimSuffix(v, "/s"), 64)
		rl.Rate = f
		if err != nil {
			bad("wolke.ratelimit", v, fmt.Errorf("want requests per second, e.g. 100 or 100/s"))
		} else {
			if b, ok := settings["wolke.ratelimit.burst"]; ok {
				if n, err := strconv.Atoi(b); err == nil {
					rl.Burst = n
				} else {
					bad("wolke.ratelimit.burst", b, err)
				}
			}
			if k, ok := settings["wolke.ratelimit.key"]; ok {
				rl.Key = k
			}
			if c, ok := settings["wolke.ratelimit.cluster"]; ok {
				rl.Cluster = c == "true"
			}
			if err := rl.validate(); err != nil {
				bad("wolke.ratelimit", v, err)
			} else {
				p.RateLimit = rl
			}
		}
	}
	if v, ok := settings["wolke.cache"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("wolke.cache", v, err)
		} else {
			p.Cache = &CachePolicy{Enabled: b}
		}
	}
	if v, ok := settings["wolke.concurrency"]; ok {
		switch v {
		case "off", "false":
			p.Concurrency = &ConcurrencyPolicy{Disabled: true}
		case "on", "true", "adaptive":
			p.Concurrency = nil
		default:
			bad("wolke.concurrency", v, fmt.Errorf("want on or off"))
		}
	}

	if len(base.Routes) == 0 {
		r := RouteSpec{Prefix: "/" + name, StripPrefix: true}
		custom := false
		if v, ok := settings["wolke.http.path"]; ok {
			if v == "" || v[0] != '/' {
				bad("wolke.http.path", v, fmt.Errorf("want a path starting with /"))
			} else {
				r.Prefix, custom = strings.TrimSuffix(v, "/"), true
				if r.Prefix == "" {
					r.Prefix = "/"
				}
			}
		}
		if v, ok := settings["wolke.http.host"]; ok {
			r.Host, custom = strings.ToLower(v), true
			if _, ok := settings["wolke.http.path"]; !ok {
				r.Prefix, r.StripPrefix = "/", false
			}
		}
		if v, ok := settings["wolke.http.strip-prefix"]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad("wolke.http.strip-prefix", v, err)
			} else {
				r.StripPrefix = b
			}
		}
		num("wolke.http.priority", &r.Priority, -1_000_000, 1_000_000)
		if custom {
			p.Routes = []RouteSpec{r}
		} else {
			host := RouteSpec{Host: strings.ToLower(name + "." + domain), Prefix: "/", Priority: r.Priority}
			p.Routes = []RouteSpec{r, host}
		}
	}
	return p, enabled, errs
}

package health

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults, Consul's values.
const (
	// MinInterval is the shortest interval between two runs of a check
	// (Consul's checks.MinInterval). A shorter interval is raised to it
	// with a warning, as Consul does, rather than rejected.
	MinInterval = time.Second
	// DefaultTimeout bounds one HTTP, TCP or gRPC probe.
	DefaultTimeout = 10 * time.Second
	// DefaultScriptTimeout bounds one script run (Consul: 30 s).
	DefaultScriptTimeout = 30 * time.Second
	// DefaultOutputMaxSize is the default limit of a check's Output in bytes.
	DefaultOutputMaxSize = 4096
	// UserAgent is sent by HTTP checks unless Header sets one.
	UserAgent = "wolke Health Check"
	// DefaultShell runs Script when Shell is empty.
	DefaultShell = "/bin/sh"
)

// Check kinds returned by Definition.Type (Consul's HealthCheck.Type values).
const (
	TypeHTTP   = "http"
	TypeTCP    = "tcp"
	TypeTTL    = "ttl"
	TypeGRPC   = "grpc"
	TypeScript = "script"
)

// Definition is a check definition as it arrives in PUT
// /v1/agent/check/register or inside a service registration. JSON field
// names are Consul's; decoding (decode.go) is case-insensitive, accepts
// Consul's snake_case aliases (check_id, tls_skip_verify, script_args, ...)
// and durations as strings ("10s") or integer nanoseconds.
type Definition struct {
	ID        string `json:",omitempty"` // also "CheckID"; defaults to Name
	Name      string `json:",omitempty"` // required
	ServiceID string `json:",omitempty"` // the service this check belongs to, "" for a node check
	Notes     string `json:",omitempty"`
	Status    string `json:",omitempty"` // initial status; "" means critical (Consul)

	Interval time.Duration `json:",omitempty"` // required for HTTP, TCP, gRPC and script checks
	Timeout  time.Duration `json:",omitempty"` // 0 means DefaultTimeout (DefaultScriptTimeout for scripts)
	TTL      time.Duration `json:",omitempty"` // makes this a TTL check

	// DeregisterCriticalServiceAfter, if > 0, makes the Manager ask for the
	// deregistration of ServiceID once this check has been critical for
	// longer than this (at least Config.MinDeregisterAfter).
	DeregisterCriticalServiceAfter time.Duration `json:",omitempty"`

	// HTTP check: a GET (or Method) of this http:// or https:// URL; 2xx is
	// passing, 429 warning, anything else or an error critical.
	HTTP             string              `json:",omitempty"`
	Method           string              `json:",omitempty"` // default GET
	Header           map[string][]string `json:",omitempty"` // a "Host" entry sets the request's Host
	Body             string              `json:",omitempty"`
	DisableRedirects bool                `json:",omitempty"` // by default redirects are followed, as in Consul
	TLSServerName    string              `json:",omitempty"` // also used by GRPCUseTLS and TCPUseTLS
	TLSSkipVerify    bool                `json:",omitempty"`

	// TCP check: connect to host:port.
	TCP       string `json:",omitempty"`
	TCPUseTLS bool   `json:",omitempty"`

	// GRPC check: grpc.health.v1.Health/Check at "host:port" or
	// "host:port/service"; SERVING is passing, anything else critical.
	GRPC       string `json:",omitempty"`
	GRPCUseTLS bool   `json:",omitempty"`

	// Script check (only with Config.EnableScriptChecks): Args is executed
	// directly (no shell; JSON "Args" or "ScriptArgs"); Script is a command
	// line run as Shell -c Script. Exit 0 is passing, 1 warning, else critical.
	Args   []string `json:",omitempty"`
	Script string   `json:",omitempty"`
	Shell  string   `json:",omitempty"` // default DefaultShell

	SuccessBeforePassing   int `json:",omitempty"`
	FailuresBeforeWarning  int `json:",omitempty"` // default FailuresBeforeCritical
	FailuresBeforeCritical int `json:",omitempty"`
	OutputMaxSize          int `json:",omitempty"` // 0 means DefaultOutputMaxSize

	// Check kinds Consul has and wolke does not run. They are decoded only
	// so that Validate can name them instead of reporting a missing type.
	H2PING            string `json:",omitempty"`
	UDP               string `json:",omitempty"`
	DockerContainerID string `json:",omitempty"`
	AliasNode         string `json:",omitempty"`
	AliasService      string `json:",omitempty"`
	OSService         string `json:",omitempty"`
}

// CheckID returns ID, or Name when ID is empty (Consul's default).
func (d Definition) CheckID() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Name
}

// kinds lists every check kind the definition sets, supported or not.
func (d Definition) kinds() []string {
	var k []string
	add := func(set bool, name string) {
		if set {
			k = append(k, name)
		}
	}
	add(d.HTTP != "", TypeHTTP)
	add(d.TCP != "", TypeTCP)
	add(d.TTL != 0, TypeTTL)
	add(d.GRPC != "", TypeGRPC)
	add((len(d.Args) > 0 || d.Script != "") && d.DockerContainerID == "", TypeScript)
	add(d.H2PING != "", "h2ping")
	add(d.UDP != "", "udp")
	add(d.DockerContainerID != "", "docker")
	add(d.AliasNode != "" || d.AliasService != "", "alias")
	add(d.OSService != "", "os_service")
	return k
}

// Type returns the check kind: "http", "tcp", "ttl", "grpc" or "script";
// Consul's name ("docker", "h2ping", ...) for a kind wolke does not run;
// "" when no kind or more than one is set.
func (d Definition) Type() string {
	if k := d.kinds(); len(k) == 1 {
		return k[0]
	}
	return ""
}

func (d Definition) periodic() bool {
	switch d.Type() {
	case TypeHTTP, TypeTCP, TypeGRPC, TypeScript:
		return true
	}
	return false
}

// Validate checks the definition and returns a *DefinitionError with a
// one-line reason (errors.Is ErrInvalidDefinition) for the first problem
// found. A script check with scriptsEnabled false also matches
// ErrScriptsDisabled. Intervals below MinInterval are not an error: the
// Manager raises them, as Consul does.
func (d Definition) Validate(scriptsEnabled bool) error {
	if strings.TrimSpace(d.Name) == "" {
		return invalid("Name is required")
	}
	if d.Status != "" && !ValidStatus(d.Status) {
		return invalid(fmt.Sprintf("Status must be passing, warning or critical, not %q", d.Status))
	}
	kinds := d.kinds()
	switch {
	case len(kinds) == 0:
		return invalid("exactly one of HTTP, TCP, GRPC, TTL, Args/Script (script) must be set")
	case len(kinds) > 1:
		return invalid(fmt.Sprintf("exactly one of HTTP, TCP, GRPC, TTL, Args/Script (script) must be set, not %s", strings.Join(kinds, " and ")))
	}
	kind := kinds[0]
	for _, c := range []struct {
		name string
		v    time.Duration
	}{{"Interval", d.Interval}, {"Timeout", d.Timeout}, {"TTL", d.TTL}, {"DeregisterCriticalServiceAfter", d.DeregisterCriticalServiceAfter}} {
		if c.v < 0 {
			return invalid(c.name + " must not be negative")
		}
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"SuccessBeforePassing", d.SuccessBeforePassing}, {"FailuresBeforeWarning", d.FailuresBeforeWarning}, {"FailuresBeforeCritical", d.FailuresBeforeCritical}, {"OutputMaxSize", d.OutputMaxSize}} {
		if c.v < 0 {
			return invalid(c.name + " must not be negative")
		}
	}
	if d.FailuresBeforeWarning > 0 && d.FailuresBeforeWarning > d.FailuresBeforeCritical {
		return invalid("FailuresBeforeWarning must not be greater than FailuresBeforeCritical")
	}
	if d.periodic() && d.Interval == 0 {
		return invalid("Interval must be > 0 for Script, HTTP, TCP or GRPC checks")
	}
	if kind == TypeTTL && d.Interval != 0 {
		return invalid("Interval and TTL cannot both be specified")
	}
	switch kind {
	case TypeHTTP:
		return validateHTTP(d)
	case TypeTCP:
		if err := validateHostPort("TCP", d.TCP); err != nil {
			return err
		}
	case TypeGRPC:
		addr, _, _ := strings.Cut(d.GRPC, "/")
		if err := validateHostPort("GRPC", addr); err != nil {
			return err
		}
	case TypeScript:
		if !scriptsEnabled {
			return &DefinitionError{
				Reason: "script checks are disabled on this agent; start it with -enable-script-checks",
				cause:  ErrScriptsDisabled,
			}
		}
		if len(d.Args) > 0 && d.Script != "" {
			return invalid("only one of Args and Script may be set")
		}
		if len(d.Args) > 0 && d.Args[0] == "" {
			return invalid("Args[0] must name a program")
		}
	case TypeTTL:
		// nothing more
	default:
		return invalid(fmt.Sprintf("unknown check type %q: wolke runs http, tcp, ttl, grpc and script checks", kind))
	}
	return nil
}

func validateHTTP(d Definition) error {
	u, err := url.Parse(d.HTTP)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(fmt.Sprintf("HTTP must be an http:// or https:// URL, not %q", d.HTTP))
	}
	if d.Method != "" && !validToken(d.Method) {
		return invalid(fmt.Sprintf("invalid Method %q", d.Method))
	}
	for k := range d.Header {
		if !validToken(k) {
			return invalid(fmt.Sprintf("invalid Header name %q", k))
		}
	}
	return nil
}

func validateHostPort(field, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid(fmt.Sprintf("%s must be host:port, not %q", field, addr))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalid(fmt.Sprintf("%s port must be between 1 and 65535, not %q", field, port))
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token (a method or header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// effectiveTimeout returns Timeout or the kind's default.
func (d Definition) effectiveTimeout() time.Duration {
	switch {
	case d.Timeout > 0:
		return d.Timeout
	case d.Type() == TypeScript:
		return DefaultScriptTimeout
	default:
		return DefaultTimeout
	}
}

func (d Definition) outputMaxSize() int {
	if d.OutputMaxSize > 0 {
		return d.OutputMaxSize
	}
	return DefaultOutputMaxSize
}

func (d Definition) method() string {
	if d.Method == "" {
		return http.MethodGet
	}
	return d.Method
}

package chassis

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// settings is the chassis's own part of the environment: the same for every service,
// read with the same ParseEnv as the service's Config. The help tags are the
// documentation `<service> help` prints.
type settings struct {
	Port      portNumber `env:"PORT" default:"0" help:"port of the service's API; 0 picks a free one (it is registered)"`
	AdminPort portNumber `env:"ADMIN_PORT" default:"0" help:"port of /health, /metrics and /debug/pprof; 0 picks a free one (registered as meta admin_port)"`
	BindAddr  string     `env:"BIND_ADDR" help:"IP both ports listen on; empty: all interfaces"`

	Agent string `env:"WOLKE_HTTP_ADDR,CONSUL_HTTP_ADDR" default:"127.0.0.1:8500" help:"HTTP address of the local wolke (or Consul) agent"`
	Token string `env:"WOLKE_HTTP_TOKEN,CONSUL_HTTP_TOKEN" help:"ACL token sent to the agent"`

	ID              string        `env:"SERVICE_ID" help:"instance ID in the catalog; default <name>-<hostname>-<port>"`
	Address         string        `env:"SERVICE_ADDRESS" help:"address registered in the catalog; default BIND_ADDR, else the agent's node address"`
	Tags            []string      `env:"SERVICE_TAGS" help:"comma-separated tags added to the registration"`
	CheckInterval   time.Duration `env:"CHECK_INTERVAL" default:"1s" help:"how often the agent probes /health/ready"`
	DeregisterAfter time.Duration `env:"DEREGISTER_CRITICAL_AFTER" default:"1m" help:"the agent removes an instance whose check stayed critical this long (a crashed process)"`
	DeregisterWait  time.Duration `env:"DEREGISTER_WAIT" default:"1s" help:"on SIGTERM, time to keep serving after the catalog dropped this instance, so that every client has seen it"`
	DrainTimeout    time.Duration `env:"DRAIN_TIMEOUT" default:"30s" help:"on SIGTERM, time in-flight requests get to finish once no new ones are accepted"`
	Reregister      time.Duration `env:"REREGISTER_INTERVAL" default:"10s" help:"how often the instance makes sure the agent still has its registration (an agent restarted without state forgets it)"`
	StartTimeout    time.Duration `env:"START_TIMEOUT" default:"30s" help:"how long the start waits for the agent (loading the configuration, registering) before it fails"`
	ConfigPrefix    string        `env:"CONFIG_PREFIX" help:"KV prefix of the dynamic configuration; default config/<name>/"`

	LogLevel      slog.Level `env:"LOG_LEVEL" default:"info" help:"debug, info, warn or error"`
	LogFormat     string     `env:"LOG_FORMAT" default:"json" help:"json (one object per line) or text"`
	AccessLog     bool       `env:"ACCESS_LOG" default:"true" help:"log one line per request"`
	TraceExporter string     `env:"OTEL_TRACES_EXPORTER" default:"none" help:"none, otlp (OTLP/HTTP, configured by the OTEL_EXPORTER_OTLP_* variables) or console (stderr)"`

	agentURL *url.URL
}

// portNumber is a TCP port, 0–65535, with an error message that says so.
type portNumber int

func (p *portNumber) UnmarshalText(b []byte) error {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 || n > 65535 {
		return errors.New("not a port number (0-65535)")
	}
	*p = portNumber(n)
	return nil
}

// Validate implements Validator.
func (s *settings) Validate() error {
	var errs []*VarError
	bad := func(name, value, format string, args ...any) {
		errs = append(errs, &VarError{Var: name, Value: value, Err: fmt.Errorf(format, args...)})
	}
	if s.BindAddr != "" && net.ParseIP(s.BindAddr) == nil {
		bad("BIND_ADDR", s.BindAddr, "not an IP address")
	}
	if u, err := parseAgentAddr(s.Agent); err != nil {
		bad("WOLKE_HTTP_ADDR", s.Agent, "%v", err)
	} else {
		s.agentURL = u
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"CHECK_INTERVAL", s.CheckInterval, time.Millisecond},
		{"DEREGISTER_CRITICAL_AFTER", s.DeregisterAfter, time.Second},
		{"DEREGISTER_WAIT", s.DeregisterWait, 0},
		{"DRAIN_TIMEOUT", s.DrainTimeout, time.Millisecond},
		{"START_TIMEOUT", s.StartTimeout, time.Millisecond},
		{"REREGISTER_INTERVAL", s.Reregister, time.Millisecond},
	} {
		if d.v < d.min {
			bad(d.name, d.v.String(), "must be at least %v", d.min)
		}
	}
	switch s.LogFormat {
	case "json", "text":
	default:
		bad("LOG_FORMAT", s.LogFormat, "must be json or text")
	}
	switch s.TraceExporter {
	case "none", "otlp", "console":
	default:
		bad("OTEL_TRACES_EXPORTER", s.TraceExporter, "must be none, otlp or console")
	}
	if len(errs) > 0 {
		return &ConfigError{Vars: errs}
	}
	return nil
}

// parseAgentAddr accepts host:port or a URL (http or https), as Consul's
// CONSUL_HTTP_ADDR does.
func parseAgentAddr(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, errors.New("not host:port or an http(s) URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("scheme must be http or https")
	}
	return u, nil
}

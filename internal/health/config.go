package health

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// DefaultMinDeregisterAfter is the smallest effective
// DeregisterCriticalServiceAfter (Consul's check_deregister_interval_min).
const DefaultMinDeregisterAfter = time.Minute

// Config configures a Manager. The zero value is usable: every zero field
// means its default. NewManager copies it; later changes have no effect.
type Config struct {
	// EnableScriptChecks allows script checks (Args/Script). Off by
	// default: a script check lets anyone who can register a check run
	// programs on the agent's machine (the agent's -enable-script-checks).
	EnableScriptChecks bool

	// Logger receives check state changes (warn on warning/critical, debug
	// otherwise). Default: discard.
	Logger *slog.Logger

	// Clock schedules intervals, staggers, TTL expiry and
	// DeregisterCriticalServiceAfter. Default: RealClock.
	Clock Clock

	// Notify receives every change of a check's reported status or output,
	// and the initial state queued by Add. See the package documentation
	// for the calling contract. Default: none.
	Notify func(Update)

	// Deregister is called once each time a check with a ServiceID and a
	// DeregisterCriticalServiceAfter has been critical for that long without
	// interruption; the agent then deregisters the service (and so removes
	// its checks). Same calling contract as Notify. Default: none.
	Deregister func(Deregistration)

	// MinDeregisterAfter raises smaller DeregisterCriticalServiceAfter
	// values to it, with a warning (Consul: 1 minute, because reaping a
	// service that merely restarted is worse than reaping late).
	// Default: DefaultMinDeregisterAfter.
	MinDeregisterAfter time.Duration

	// TLSClientConfig is the base TLS config (CA roots, client certificate)
	// for HTTPS, TCPUseTLS and GRPCUseTLS checks; each check clones it and
	// applies its TLSServerName and TLSSkipVerify. Default: system roots.
	TLSClientConfig *tls.Config
}

// DefaultConfig returns the defaults spelled out: scripts off, no logging,
// the wall clock, a one-minute minimum deregistration delay.
func DefaultConfig() Config {
	return Config{
		Logger:             slog.New(slog.DiscardHandler),
		Clock:              RealClock{},
		MinDeregisterAfter: DefaultMinDeregisterAfter,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.MinDeregisterAfter <= 0 {
		c.MinDeregisterAfter = d.MinDeregisterAfter
	}
	return c
}

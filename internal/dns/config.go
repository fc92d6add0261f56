package dns

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config configures a Server. The static part (Addr, Domain) is fixed for the life of
// the server; the ReloadableConfig part can be swapped while it runs (Server.Reload).
type Config struct {
	// Addr is the host:port the server listens on, over UDP and TCP at once (Consul's
	// ports.dns, flag -dns-addr). Port 0 picks a free port, the same for both
	// protocols; Server.Addr reports it. Default 127.0.0.1:8600.
	Addr string
	// Domain is the zone the server is authoritative for (flag -domain), with or
	// without the final dot, in any case. Default "wolke."; "consul." makes wolke a
	// drop-in for Consul's DNS names.
	Domain string

	ReloadableConfig
}

// ReloadableConfig holds the settings a running server can change (Server.Reload): a
// query sees either the old settings or the new ones, never a mix.
type ReloadableConfig struct {
	// OnlyPassing answers only instances whose checks all pass (flag -dns-only-passing).
	// By default instances in warning are answered too; critical ones never are.
	OnlyPassing bool
	// NodeTTL is the TTL of node records (NODE.node, NS), whole seconds (flag
	// -dns-node-ttl). Default 0: clients do not cache, so every lookup sees the
	// catalog's current state; raise it to trade freshness for fewer queries.
	NodeTTL time.Duration
	// ServiceTTL is the TTL of service records (A, AAAA, SRV and their additional
	// records), whole seconds (flag -dns-service-ttl). Default 0, like Consul.
	ServiceTTL time.Duration
	// UDPAnswerLimit caps the answers of a UDP response to a query without EDNS (which
	// must fit 512 bytes anyway): 1 to 8, default 3 (Consul's udp_answer_limit, and its
	// cap). The instances answered are a random few, so the load still spreads.
	UDPAnswerLimit int
	// EnableTruncate sets the TC bit on a UDP response that left answers out (by the
	// answer limit or the size limit), so that clients retry over TCP and get them all.
	// Default true (RFC 1035); Consul's enable_truncate defaults to false, which makes
	// UDP clients silently use the first few instances.
	EnableTruncate bool
	// Recursors are the DNS servers that queries for other zones are forwarded to, in
	// order until one answers (host or host:port, port 53 if omitted; flag -recursor,
	// repeatable). Without recursors such queries are refused.
	Recursors []string
	// RecursorTimeout bounds one exchange with one recursor. Default 2s.
	RecursorTimeout time.Duration
	// SOA sets the numbers of the zone's SOA record.
	SOA SOAConfig
}

// SOAConfig are the timers of the SOA record, in seconds (Consul's dns_config.soa).
type SOAConfig struct {
	Refresh uint32 // default 3600
	Retry   uint32 // default 600
	Expire  uint32 // default 86400
	// Minttl is both the SOA's minimum field and its own TTL; resolvers cache negative
	// answers (NXDOMAIN, no data) for this long. Default 0.
	Minttl uint32
}

// Defaults.
const (
	DefaultAddr   = "127.0.0.1:8600"
	DefaultDomain = "wolke."
)

// maxUDPAnswerLimit is Consul's cap on UDPAnswerLimit: about 25 A records fit 512 bytes
// but only about 14 AAAA, and a small limit keeps answers quick to parse.
const maxUDPAnswerLimit = 8

// DefaultConfig returns the defaults: Consul's, except the domain and EnableTruncate.
func DefaultConfig() Config {
	return Config{
		Addr:   DefaultAddr,
		Domain: DefaultDomain,
		ReloadableConfig: ReloadableConfig{
			UDPAnswerLimit:  3,
			EnableTruncate:  true,
			RecursorTimeout: 2 * time.Second,
			SOA:             SOAConfig{Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0},
		},
	}
}

// Validate reports every problem of the configuration, one per line.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := splitAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("dns: addr %q: %w", c.Addr, err))
	}
	if d := strings.TrimSuffix(c.Domain, "."); d == "" {
		errs = append(errs, fmt.Errorf("dns: domain is empty"))
	} else if _, ok := dns.IsDomainName(c.Domain); !ok || strings.Contains(d, "..") {
		errs = append(errs, fmt.Errorf("dns: domain %q is not a domain name", c.Domain))
	}
	errs = append(errs, c.ReloadableConfig.Validate())
	return errors.Join(errs...)
}

// Validate reports every problem of the reloadable settings, one per line.
func (c ReloadableConfig) Validate() error {
	var errs []error
	for _, ttl := range []struct {
		name string
		d    time.Duration
	}{{"node TTL", c.NodeTTL}, {"service TTL", c.ServiceTTL}} {
		if ttl.d < 0 || ttl.d/time.Second > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("dns: %s %v: want 0 to %ds", ttl.name, ttl.d, math.MaxInt32))
		}
	}
	if c.UDPAnswerLimit < 1 || c.UDPAnswerLimit > maxUDPAnswerLimit {
		errs = append(errs, fmt.Errorf("dns: UDP answer limit %d: want 1 to %d", c.UDPAnswerLimit, maxUDPAnswerLimit))
	}
	for _, r := range c.Recursors {
		if _, err := recursorAddr(r); err != nil {
			errs = append(errs, fmt.Errorf("dns: recursor %q: %w", r, err))
		}
	}
	if c.RecursorTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dns: recursor timeout %v: want more than 0", c.RecursorTimeout))
	}
	return errors.Join(errs...)
}

// splitAddr parses host:port with a numeric port.
func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: want 0 to 65535", port)
	}
	return host, int(p), nil
}

// recursorAddr turns a recursor as configured (IP, IP:port, [IPv6]:port, host[:port])
// into host:port, adding Consul's default port 53.
func recursorAddr(r string) (string, error) {
	if r == "" {
		return "", errors.New("empty address")
	}
	if ip, err := netip.ParseAddr(strings.Trim(r, "[]")); err == nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	if _, _, err := splitAddr(r); err == nil {
		return r, nil
	}
	if strings.ContainsAny(r, ":[]/ ") {
		return "", errors.New("want host, IP, host:port or [IPv6]:port")
	}
	return net.JoinHostPort(r, "53"), nil
}

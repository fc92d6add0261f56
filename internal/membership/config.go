package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPort is the gossip port (Consul's serf LAN port), used by DefaultConfig and
// for join addresses given without a port.
const DefaultPort = 8301

// Config configures a Pool. New copies it; the caller may reuse it afterwards.
type Config struct {
	// NodeName is this member's name, unique in the pool (default: the hostname).
	NodeName string

	// BindAddr is the IP gossip listens on, TCP and UDP (default "0.0.0.0").
	BindAddr string
	// BindPort is the gossip port (default 8301). 0 lets the OS pick one, which tests
	// use; LocalMember().Port then tells the port picked.
	BindPort int
	// AdvertiseAddr is the IP other members use to reach this one (default: BindAddr,
	// or a private address of this host when BindAddr is 0.0.0.0).
	AdvertiseAddr string
	// AdvertisePort is the port advertised with AdvertiseAddr (default: the bound port).
	AdvertisePort int

	// Tags are this member's metadata, gossiped to all members (see the Tag constants).
	// Encoded, they must fit memberlist's 512-byte metadata limit.
	Tags map[string]string

	// DataDir, when set, keeps serf's snapshot at DataDir/serf/local.snapshot: the
	// known members and Lamport clocks, so that a restarted agent rejoins its old
	// peers without -join and does not replay old user events.
	DataDir string
	// RejoinAfterLeave makes a restart rejoin from the snapshot even after a graceful
	// Leave (default false: after a leave, only an explicit join rejoins; Consul's
	// -rejoin).
	RejoinAfterLeave bool

	// RetryJoin lists addresses ("ip", "ip:port" or "host:port"; the port defaults to
	// 8301) that New joins in the background, retrying with exponential backoff from
	// 1 s up to RetryInterval until one join succeeds or RetryMax attempts failed.
	RetryJoin []string
	// RetryInterval caps the backoff between retry-join attempts (default 30 s, as
	// Consul's -retry-interval).
	RetryInterval time.Duration
	// RetryMax is the number of retry-join attempts before giving up; 0 retries
	// forever (Consul's -retry-max).
	RetryMax int

	// EventBuffer is the capacity of the Events channel (default 1024). When it is
	// full, new events are dropped and counted, never blocking gossip.
	EventBuffer int

	// LeavePropagateDelay is how long Leave keeps answering probes after its leave
	// message went out, so that peers learn "left" rather than suspect a failure
	// (default 1 s, serf's default; a few probe intervals is enough).
	LeavePropagateDelay time.Duration
	// ReconnectTimeout is how long a failed member is kept (and reconnection to it
	// attempted) before it is reaped (default 72 h, Consul's LAN default).
	ReconnectTimeout time.Duration
	// TombstoneTimeout is how long a member that left is kept before it is reaped
	// (default 24 h).
	TombstoneTimeout time.Duration

	// Memberlist supplies the failure-detection and gossip timing (probe interval and
	// timeout, suspicion multipliers, gossip interval, push/pull interval, TCP timeout,
	// DeadNodeReclaimTime). nil means memberlist.DefaultLANConfig(), which the gossip
	// simulator (internal/gossipsim) also assumes; tests pass faster timing. New copies
	// it and overrides identity, addresses, delegates and logging; a zero
	// DeadNodeReclaimTime becomes 30 s (Consul's setting: a failed member's name can be
	// taken by a new address after 30 s).
	Memberlist *memberlist.Config

	// Logger receives serf's and memberlist's logs and the pool's own, with a
	// "component" attribute (nil: discard).
	Logger *slog.Logger
	// Registerer, when set, receives the pool's Prometheus metrics
	// (wolke_membership_*).
	Registerer prometheus.Registerer
}

// DefaultConfig returns the settings of a plain `wolke agent`: gossip on 0.0.0.0:8301
// named after the host, with memberlist's LAN timing.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "wolke"
	}
	return Config{
		NodeName:            host,
		BindAddr:            "0.0.0.0",
		BindPort:            DefaultPort,
		RetryInterval:       30 * time.Second,
		EventBuffer:         1024,
		LeavePropagateDelay: time.Second,
		ReconnectTimeout:    72 * time.Hour,
		TombstoneTimeout:    24 * time.Hour,
	}
}

// Validate reports the first setting that cannot work, in words a user can act on.
func (c Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("membership: node name must not be empty")
	}
	if len(c.NodeName) > 128 {
		return fmt.Errorf("membership: node name %q is longer than 128 bytes", c.NodeName)
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("membership: bind address %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("membership: advertise address %q is not an IP address", c.AdvertiseAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("membership: gossip port %d out of range", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("membership: advertise port %d out of range", c.AdvertisePort)
	}
	for _, a := range c.RetryJoin {
		if _, err := joinAddr(a); err != nil {
			return err
		}
	}
	if c.RetryInterval <= 0 {
		return errors.New("membership: retry interval must be positive")
	}
	if c.RetryMax < 0 {
		return errors.New("membership: retry max must not be negative (0 retries forever)")
	}
	if c.EventBuffer <= 0 {
		return errors.New("membership: event buffer must be positive")
	}
	if c.LeavePropagateDelay < 0 {
		return errors.New("membership: leave propagate delay must not be negative")
	}
	if c.ReconnectTimeout <= 0 || c.TombstoneTimeout <= 0 {
		return errors.New("membership: reconnect and tombstone timeouts must be positive")
	}
	if m := c.Memberlist; m != nil {
		if m.ProbeInterval <= 0 || m.ProbeTimeout <= 0 || m.GossipInterval <= 0 || m.TCPTimeout <= 0 {
			return errors.New("membership: memberlist probe interval, probe timeout, gossip interval and TCP timeout must be positive")
		}
		if m.SuspicionMult < 1 || m.SuspicionMaxTimeoutMult < 1 {
			return errors.New("membership: memberlist suspicion multipliers must be at least 1")
		}
	}
	return nil
}

// joinAddr normalizes a join address to host:port, adding DefaultPort when the port
// is missing ("10.0.0.1", "::1", "[::1]", "node1" all work).
func joinAddr(a string) (string, error) {
	if a == "" {
		return "", errors.New("membership: empty join address")
	}
	if ip := net.ParseIP(a); ip != nil {
		return net.JoinHostPort(a, strconv.Itoa(DefaultPort)), nil
	}
	if len(a) > 2 && a[0] == '[' && a[len(a)-1] == ']' && net.ParseIP(a[1:len(a)-1]) != nil {
		return net.JoinHostPort(a[1:len(a)-1], strconv.Itoa(DefaultPort)), nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: a host name.
		if _, _, err2 := net.SplitHostPort(a + ":1"); err2 != nil {
			return "", fmt.Errorf("membership: join address %q: %v", a, err)
		}
		return net.JoinHostPort(a, strconv.Itoa(DefaultPort)), nil
	}
	if host == "" {
		return "", fmt.Errorf("membership: join address %q has no host", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("membership: join address %q: bad port", a)
	}
	return a, nil
}

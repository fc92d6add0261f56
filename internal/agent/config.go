// Package agent is the composition root: it builds the state store, the Raft node and
// the HTTP API from one Config, starts them in order and stops them in reverse.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/dns"
	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/membership"
)

// Config is the whole agent configuration; the CLI fills it from flags.
type Config struct {
	// NodeName names this agent in the cluster (default: the hostname).
	NodeName string
	// Datacenter is reported to clients (default "dc1").
	Datacenter string
	// Dev runs a single in-memory server that needs no other setting.
	Dev bool
	// Server makes this agent hold Raft state; Bootstrap lets it elect itself alone;
	// BootstrapExpect N forms a cluster once N servers found each other by gossip.
	// A client agent (Server false) holds no Raft state and forwards to servers.
	Server          bool
	Bootstrap       bool
	BootstrapExpect int
	// DataDir keeps the node ID and the Raft log and snapshots; required for a server
	// unless Dev.
	DataDir string
	// BindAddr is the IP for gossip (SerfPort) and server RPC (ServerPort); port 0
	// picks a free one.
	BindAddr   string
	ServerPort int
	SerfPort   int
	// Join lists gossip addresses to join at start (failure to join one is an error);
	// RetryJoin lists addresses joined in the background with backoff until one answers.
	Join          []string
	RetryJoin     []string
	RetryInterval time.Duration
	// ReconcileInterval is how often the leader reconciles gossip membership into the
	// Raft configuration, besides reacting to membership events.
	ReconcileInterval time.Duration
	// AdvertiseAddr is the IP other servers use to reach this one (default BindAddr).
	AdvertiseAddr string
	// LeaderWait is how long a request that needs the leader waits for an election to
	// finish before failing with "No cluster leader" (Consul's RPC hold timeout).
	LeaderWait time.Duration
	// TombstoneTTL is how long deletions are remembered for blocking queries.
	TombstoneTTL time.Duration
	// ConfigDir holds JSON files with service and check definitions, loaded at start
	// and again on Reload (SIGHUP, `wolke reload`).
	ConfigDir string
	// EnableScriptChecks allows script checks; off by default, since a script check is
	// a way to run programs on the agent's machine through its API.
	EnableScriptChecks bool
	// SyncInterval is the period of the full anti-entropy sync of local services and
	// checks into the catalog (changes are pushed at once).
	SyncInterval time.Duration
	// SessionTTLMin is the shortest session TTL accepted (Consul's 10s; tests lower it).
	SessionTTLMin time.Duration

	Raft consensus.Config
	HTTP httpapi.Config
	// DNS configures the DNS interface; an empty Addr turns it off.
	DNS dns.Config
	// Gossip, when set, adjusts the gossip pool's settings before it starts (tests use
	// it for fast memberlist timing).
	Gossip func(*membership.Config)

	Version string
	Logger  *slog.Logger
}

// DefaultConfig returns the settings of a plain `wolke agent`.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "wolke"
	}
	return Config{
		NodeName:          host,
		Datacenter:        "dc1",
		BindAddr:          "127.0.0.1",
		ServerPort:        8300,
		SerfPort:          8301,
		RetryInterval:     30 * time.Second,
		ReconcileInterval: 10 * time.Second,
		LeaderWait:        7 * time.Second,
		TombstoneTTL:      15 * time.Minute,
		SessionTTLMin:     10 * time.Second,
		SyncInterval:      time.Minute,
		Raft:              consensus.DefaultConfig(),
		HTTP:              httpapi.DefaultConfig(),
		DNS:               dns.DefaultConfig(),
		Version:           "dev",
	}
}

// Validate reports the first setting that cannot work, in words a user can act on.
func (c Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("node name must not be empty")
	}
	if c.Dev && c.DataDir != "" {
		return errors.New("-dev keeps state in memory; drop -data-dir or -dev")
	}
	if c.Server && !c.Dev && c.DataDir == "" {
		return errors.New("a server needs -data-dir (or use -dev for an in-memory server)")
	}
	if c.Bootstrap && c.BootstrapExpect > 0 {
		return errors.New("-bootstrap and -bootstrap-expect cannot be combined")
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 0 && !c.Server {
		return errors.New("-bootstrap-expect needs -server and a positive count")
	}
	if c.BootstrapExpect == 1 {
		return errors.New("-bootstrap-expect 1 is -bootstrap")
	}
	if !c.Server && len(c.Join) == 0 && len(c.RetryJoin) == 0 {
		return errors.New("a client agent needs servers: give -join or -retry-join (or run -server / -dev)")
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("bind address %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("advertise address %q is not an IP address", c.AdvertiseAddr)
	}
	if c.ServerPort < 0 || c.ServerPort > 65535 || c.SerfPort < 0 || c.SerfPort > 65535 {
		return fmt.Errorf("ports out of range: server %d, serf %d", c.ServerPort, c.SerfPort)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		return fmt.Errorf("HTTP address %q: %v", c.HTTP.Addr, err)
	}
	if c.SyncInterval <= 0 {
		return errors.New("the anti-entropy sync interval must be positive")
	}
	if c.SessionTTLMin <= 0 {
		return errors.New("the minimum session TTL must be positive")
	}
	if c.LeaderWait <= 0 || c.TombstoneTTL <= 0 || c.ReconcileInterval <= 0 || c.RetryInterval <= 0 {
		return errors.New("leader wait, tombstone TTL, reconcile and retry intervals must be positive")
	}
	if err := c.HTTP.Validate(); err != nil {
		return err
	}
	if c.DNS.Addr != "" {
		if err := c.DNS.Validate(); err != nil {
			return err
		}
	}
	raft := c.Raft
	raft.NodeID = "validate"
	return raft.Validate()
}

func (c Config) serverAddr() string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(c.ServerPort))
}

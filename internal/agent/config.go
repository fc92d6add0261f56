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
	"github.com/wolke-platform/wolke/internal/httpapi"
)

// Config is the whole agent configuration; the CLI fills it from flags.
type Config struct {
	// NodeName names this agent in the cluster (default: the hostname).
	NodeName string
	// Datacenter is reported to clients (default "dc1").
	Datacenter string
	// Dev runs a single in-memory server that needs no other setting.
	Dev bool
	// Server makes this agent hold Raft state; Bootstrap lets it elect itself alone.
	Server    bool
	Bootstrap bool
	// DataDir keeps the node ID and the Raft log and snapshots; required for a server
	// unless Dev.
	DataDir string
	// BindAddr is the IP for server RPC (Raft); ServerPort its port (0 picks one).
	BindAddr   string
	ServerPort int
	// AdvertiseAddr is the IP other servers use to reach this one (default BindAddr).
	AdvertiseAddr string
	// LeaderWait is how long a request that needs the leader waits for an election to
	// finish before failing with "No cluster leader" (Consul's RPC hold timeout).
	LeaderWait time.Duration
	// TombstoneTTL is how long deletions are remembered for blocking queries.
	TombstoneTTL time.Duration

	Raft consensus.Config
	HTTP httpapi.Config

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
		NodeName:     host,
		Datacenter:   "dc1",
		BindAddr:     "127.0.0.1",
		ServerPort:   8300,
		LeaderWait:   7 * time.Second,
		TombstoneTTL: 15 * time.Minute,
		Raft:         consensus.DefaultConfig(),
		HTTP:         httpapi.DefaultConfig(),
		Version:      "dev",
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
	if !c.Dev && !c.Server {
		return errors.New("client agents arrive with clustering; run with -dev, or -server -bootstrap -data-dir DIR")
	}
	if c.Server && !c.Dev && c.DataDir == "" {
		return errors.New("a server needs -data-dir (or use -dev for an in-memory server)")
	}
	if c.Server && !c.Dev && !c.Bootstrap {
		return errors.New("joining a cluster arrives with clustering; a single server needs -bootstrap")
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("bind address %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("advertise address %q is not an IP address", c.AdvertiseAddr)
	}
	if c.ServerPort < 0 || c.ServerPort > 65535 {
		return fmt.Errorf("server port %d out of range", c.ServerPort)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		return fmt.Errorf("HTTP address %q: %v", c.HTTP.Addr, err)
	}
	if c.LeaderWait <= 0 || c.TombstoneTTL <= 0 {
		return errors.New("leader wait and tombstone TTL must be positive")
	}
	if err := c.HTTP.Validate(); err != nil {
		return err
	}
	raft := c.Raft
	raft.NodeID = "validate"
	return raft.Validate()
}

func (c Config) serverAddr() string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(c.ServerPort))
}

package main

import (
	"context"

	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/agent"
	"github.com/wolke-platform/wolke/internal/proxy"
)

func init() { subcommands = append(subcommands, newAgentCmd) }

func newAgentCmd() *cobra.Command {
	cfg := agent.DefaultConfig()
	var logLevel string
	var logJSON bool
	var pf *proxyFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a wolke agent",
		Long: `Run a wolke agent.

  wolke agent -dev
      one in-memory server on 127.0.0.1:8500; nothing to configure, nothing kept
  wolke agent -server -bootstrap -data-dir DIR
      a durable single server: Raft log and snapshots in DIR, fsync on every write batch
  wolke agent -server -bootstrap-expect 3 -data-dir DIR -bind IP -join IP
      one of three servers that form a cluster by themselves once they found each other
  wolke agent -data-dir DIR -bind IP -retry-join IP
      a client agent: joins the gossip pool, forwards API requests to the servers

On SIGINT or SIGTERM the agent leaves the cluster gracefully (a server is removed from
the Raft configuration) and stops: in-flight requests finish first.

With -proxy-listen :8080 the agent also runs the edge gateway (see wolke proxy --help;
its flags carry the prefix proxy- here).`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{envAll: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, logJSON || (!cfg.Dev && !isTerminal(os.Stderr)))
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Version = Version
			// The agent's heap is mostly short-lived request garbage around a small
			// state; collecting at 200 % growth instead of Go's 100 % cut server CPU per
			// write by about 9 % in `wolke bench kv`. GOGC still wins when set.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(200)
			}
			a, err := agent.New(cfg)
			if err != nil {
				return usageErrorf("%v", err)
			}
			if err := a.Start(); err != nil {
				return err
			}
			// The gateway inside the agent follows this agent's own API.
			var gw *proxy.Proxy
			if pf.cfg.Listen != "" {
				pcfg := pf.config()
				pcfg.APIAddr, pcfg.Logger = a.HTTPAddr(), logger
				if gw, err = proxy.New(pcfg); err != nil {
					a.Shutdown(context.Background())
					return usageErrorf("%v", err)
				}
				if err := gw.Start(cmd.Context()); err != nil {
					a.Shutdown(context.Background())
					return err
				}
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
		wait:
			for {
				select {
				case <-cmd.Context().Done():
					break wait
				case <-a.LeaveRequested():
					break wait
				case <-hup:
					if err := a.Reload(); err != nil {
						logger.Error("reload failed; the previous configuration stays", "err", err)
					}
					if gw != nil {
						if err := gw.Reload(); err != nil {
							logger.Error("gateway reload failed; the previous configuration stays", "err", err)
						}
					}
				}
			}
			logger.Info("leaving and shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
			defer cancel()
			if gw != nil {
				if err := gw.Shutdown(ctx); err != nil {
					logger.Warn("gateway shutdown", "err", err)
				}
			}
			if err := a.Leave(ctx); err != nil {
				logger.Warn("graceful leave failed", "err", err)
			}
			return a.Shutdown(ctx)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.Dev, "dev", false, "run a single in-memory server (nothing survives a restart)")
	f.BoolVar(&cfg.Server, "server", false, "run as a server (holds Raft state)")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "let this server elect itself leader alone (single-server cluster)")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "form a cluster once this many servers have found each other by gossip")
	f.StringArrayVar(&cfg.Join, "join", nil, "gossip address of an agent to join at start (repeatable)")
	f.StringArrayVar(&cfg.RetryJoin, "retry-join", nil, "gossip address to join in the background, retrying with backoff (repeatable)")
	f.DurationVar(&cfg.RetryInterval, "retry-interval", cfg.RetryInterval, "longest wait between retry-join attempts")
	f.IntVar(&cfg.SerfPort, "serf-port", cfg.SerfPort, "gossip port (TCP and UDP) on -bind")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the node ID, Raft log and snapshots")
	f.StringVar(&cfg.HTTP.Addr, "http-addr", cfg.HTTP.Addr, "address of the HTTP API (IP:PORT)")
	f.StringVar(&cfg.BindAddr, "bind", cfg.BindAddr, "IP address for gossip (-serf-port) and server RPC (-server-port)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise", "", "IP address other agents reach this one at (default: -bind)")
	f.IntVar(&cfg.ServerPort, "server-port", cfg.ServerPort, "port for server RPC (Raft)")
	f.StringVar(&cfg.NodeName, "node", cfg.NodeName, "name of this node")
	f.StringVar(&cfg.Datacenter, "datacenter", cfg.Datacenter, "datacenter name")
	f.StringVar(&cfg.Raft.LogStore, "raft-log-store", cfg.Raft.LogStore, "Raft log engine for a new data dir: segments (one fsync per batch) or boltdb (Consul's); an existing data dir keeps its own")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "snapshot-threshold", cfg.Raft.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "snapshot-interval", cfg.Raft.SnapshotInterval, "how often to check whether a snapshot is due")
	f.Uint64Var(&cfg.Raft.TrailingLogs, "trailing-logs", cfg.Raft.TrailingLogs, "log entries kept after a snapshot, for followers catching up")
	f.IntVar(&cfg.HTTP.MaxConnsPerClient, "http-max-conns-per-client", cfg.HTTP.MaxConnsPerClient, "concurrent HTTP connections allowed from one client IP (more get 429)")
	f.DurationVar(&cfg.TombstoneTTL, "tombstone-ttl", cfg.TombstoneTTL, "how long KV deletions are remembered for blocking queries")
	f.StringVar(&cfg.DNS.Addr, "dns-addr", cfg.DNS.Addr, "address of the DNS interface, UDP and TCP (empty: off)")
	f.StringVar(&cfg.DNS.Domain, "domain", cfg.DNS.Domain, "DNS domain of the interface (-domain consul for drop-in use)")
	f.BoolVar(&cfg.DNS.OnlyPassing, "dns-only-passing", false, "answer only instances whose checks all pass (default: warning included)")
	f.DurationVar(&cfg.DNS.NodeTTL, "dns-node-ttl", 0, "TTL of node records")
	f.DurationVar(&cfg.DNS.ServiceTTL, "dns-service-ttl", 0, "TTL of service records")
	f.StringArrayVar(&cfg.DNS.Recursors, "recursor", nil, "DNS server for names outside the domain (repeatable; without one they are refused)")
	f.StringVar(&cfg.ConfigDir, "config-dir", "", "directory of JSON files with service and check definitions (reloaded on SIGHUP and `wolke reload`)")
	f.BoolVar(&cfg.EnableScriptChecks, "enable-script-checks", false, "allow script checks (they run programs on this machine; off by default)")
	f.BoolVar(&cfg.HTTP.EnableDebug, "enable-debug", false, "serve Go's profiler at /debug/pprof/ on the HTTP API")
	pf = addProxyFlags(f, "proxy-", "")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&logJSON, "log-json", false, "log JSON lines instead of text (default when stderr is not a terminal, except in -dev)")
	return cmd
}

func newLogger(level string, json bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, usageErrorf("invalid -log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

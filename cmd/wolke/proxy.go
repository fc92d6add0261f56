package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wolke-platform/wolke/internal/proxy"
)

func init() { subcommands = append(subcommands, newProxyCmd) }

// proxyFlags defines the gateway's flags, with prefix "proxy-" inside the agent.
type proxyFlags struct {
	cfg       proxy.Config
	accessLog bool
}

func addProxyFlags(f *pflag.FlagSet, prefix string, listenDefault string) *proxyFlags {
	pf := &proxyFlags{cfg: proxy.DefaultConfig()}
	c := &pf.cfg
	f.StringVar(&c.Listen, prefix+"listen", listenDefault, "address the gateway serves clients on (IP:PORT or :PORT)")
	f.StringVar(&c.AdminListen, prefix+"admin-listen", c.AdminListen, "address of the gateway's /metrics and /v1/proxy/routes (empty: off)")
	f.StringVar(&c.Domain, prefix+"domain", c.Domain, "services answer Host <service>.<domain> by default")
	f.StringVar(&c.TLSCert, prefix+"tls-cert", "", "PEM certificate: serve TLS with HTTP/2 and HTTP/1.1")
	f.StringVar(&c.TLSKey, prefix+"tls-key", "", "PEM private key for -"+prefix+"tls-cert")
	f.BoolVar(&c.H2C, prefix+"h2c", false, "also accept cleartext HTTP/2 (prior knowledge) on a plain listener")
	f.BoolVar(&c.Goroutines, prefix+"goroutines", false, "serve plain HTTP/1.1 with a goroutine per connection instead of event loops")
	f.StringVar(&c.ConfigFile, prefix+"config", "", "JSON file with default and per-service policies and static services (re-read on SIGHUP)")
	f.BoolVar(&pf.accessLog, prefix+"access-log", true, "write an access log as JSON lines to stdout")
	f.Int64Var(&c.CacheSize, prefix+"cache-size", c.CacheSize, "bytes of the shared HTTP cache (services opt in with wolke.cache=true)")
	f.IntVar(&c.MaxConnsPerInstance, prefix+"max-conns-per-instance", c.MaxConnsPerInstance, "upstream connections per service instance")
	f.IntVar(&c.MaxRequestBodySize, prefix+"max-body-size", c.MaxRequestBodySize, "largest request body accepted, in bytes (larger: 413)")
	return pf
}

func (pf *proxyFlags) config() proxy.Config {
	c := pf.cfg
	if !pf.accessLog {
		c.AccessLog = nil
	}
	return c
}

func newProxyCmd() *cobra.Command {
	var logLevel string
	var logJSON bool
	var pf *proxyFlags
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the edge gateway, routing to healthy instances from the catalog",
		Long: `Run the edge gateway (ambassador): routes come from the catalog of the agent at
-http-addr, updated by blocking queries the moment an instance appears, fails its
checks or leaves.

Every service is reachable at /<service>/... (prefix stripped) and at Host
<service>.<domain>; tags such as wolke.http.path=/cart, wolke.http.host=shop.example,
wolke.lb=round-robin|least-request|p2c|hash or wolke.retry.attempts=2 change that per
service. The admin listener serves /metrics and /v1/proxy/routes.

  wolke proxy -listen :8080 -http-addr 127.0.0.1:8500

SIGHUP re-reads -config; SIGINT/SIGTERM stop accepting and drain in-flight requests.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{envAll: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, logJSON || !isTerminal(os.Stderr))
			if err != nil {
				return err
			}
			ep, err := cf.resolve(os.LookupEnv)
			if err != nil {
				return err
			}
			if ep.Scheme != "http" || ep.PathPrefix != "" {
				return usageErrorf("-http-addr: the gateway talks plain HTTP to an agent at HOST:PORT")
			}
			cfg := pf.config()
			cfg.APIAddr, cfg.Token, cfg.Logger = ep.Host, ep.Token, logger
			return runProxy(cmd.Context(), cfg, logger)
		},
	}
	cmd.AddCommand(newProxyValidateCmd())
	for _, sub := range proxySubcommands {
		cmd.AddCommand(sub())
	}
	f := cmd.Flags()
	pf = addProxyFlags(f, "", ":8080")
	cf = addClientFlags(cmd)
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&logJSON, "log-json", false, "log JSON lines instead of text (default when stderr is not a terminal)")
	return cmd
}

// runProxy runs a gateway until ctx ends, reloading on SIGHUP.
func runProxy(ctx context.Context, cfg proxy.Config, logger interface {
	Error(string, ...any)
	Info(string, ...any)
}) error {
	p, err := proxy.New(cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			logger.Info("gateway draining")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Shutdown(sctx); err != nil {
				return fmt.Errorf("gateway shutdown: %w", err)
			}
			return nil
		case <-hup:
			if err := p.Reload(); err != nil {
				logger.Error("reload failed; the previous configuration stays", "err", err)
			}
		}
	}
}

func newProxyValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a gateway policy document offline (as stored at " + proxy.DocPrefix + "<service>)",
		Long: `Check a gateway policy document the way the gateway does before applying it:
strict JSON (unknown fields are errors) over the default policy, then every value.
Exit status 0 if it is valid, 1 with the reason if not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if _, err := proxy.ParseDoc(b); err != nil {
				return fmt.Errorf("%s: invalid: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", args[0])
			return nil
		},
	}
}

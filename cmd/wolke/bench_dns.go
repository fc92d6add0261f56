package main

import (
	"errors"
	"flag"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/dns/dnsbench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchDNSCmd) }

func newBenchDNSCmd() *cobra.Command {
	cfg := dnsbench.DefaultConfig()
	var qtype, format string
	var tcp bool
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Load an agent's DNS interface with queries and measure queries per second",
		Long: `Runs a closed-loop load of -c workers, each with one query in flight on its own
socket, against a DNS server (a wolke or Consul agent's DNS interface) for -d after a
warm-up, asking one name over and over, and prints queries per second and latency
percentiles. Each worker packs its query once and reads only the header of the
answer, so the load generator costs little of the machine it shares with the server.
Answers of every rcode count as answered (see the rcodes line); timeouts are errors.
Over UDP without -edns, wolke and Consul answer at most 3 records (TC set); use -tcp
or -edns 1232 for full answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, ok := dns.StringToType[strings.ToUpper(qtype)]
			if !ok {
				return usageErrorf("-type %q: want a DNS type such as A, AAAA or SRV", qtype)
			}
			cfg.Type = t
			cfg.Name = dns.Fqdn(cfg.Name)
			if tcp {
				cfg.Net = "tcp"
			}
			if format != "text" && format != "json" {
				return usageErrorf("-format %q: want text or json", format)
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			r, err := dnsbench.Run(cmd.Context(), cfg)
			if r.Type != "" {
				if werr := r.Write(cmd.OutOrStdout(), format); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	gofs := flag.NewFlagSet("dns", flag.ContinueOnError)
	gofs.StringVar(&cfg.Server, "server", cfg.Server, "DNS server `host:port` (an agent's -dns-addr)")
	gofs.StringVar(&cfg.Name, "name", cfg.Name, "name to query")
	gofs.StringVar(&qtype, "type", "SRV", "question type: A, AAAA, SRV, ...")
	gofs.BoolVar(&tcp, "tcp", false, "query over TCP (one connection per worker) instead of UDP")
	gofs.Func("edns", "add EDNS with this UDP buffer `size` (0: no EDNS)", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return errors.New("want 0 to 65535")
		}
		cfg.EDNS = uint16(v)
		return nil
	})
	gofs.IntVar(&cfg.Concurrency, "c", cfg.Concurrency, "concurrent workers, each with one query in flight")
	gofs.DurationVar(&cfg.Duration, "d", cfg.Duration, "how long to measure, after the warm-up")
	gofs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured run before measuring")
	gofs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "time to wait for one answer; a query without an answer counts as an error")
	gofs.StringVar(&format, "format", "text", "output format: `text|json`")
	cmd.Flags().AddGoFlagSet(gofs)
	return cmd
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchCatalogCmd) }

// catalogBench is the configuration of `wolke bench catalog`.
type catalogBench struct {
	addr        string
	instances   int
	nodes       int
	perService  int
	register    bool
	concurrency int
	rate        float64 // requests per second over all workers; 0 for a closed loop
	duration    time.Duration
	warmup      time.Duration
	service     string
	format      string
}

// catalogResult is what one run measured.
type catalogResult struct {
	Instances int             `json:"instances"`
	Nodes     int             `json:"nodes"`
	Services  int             `json:"services"`
	RegisterS float64         `json:"register_seconds,omitempty"`
	Path      string          `json:"path"`
	C         int             `json:"c"`
	Rate      float64         `json:"target_rate,omitempty"`
	Requests  uint64          `json:"requests"`
	Errors    uint64          `json:"errors"`
	ReqPerSec float64         `json:"req_per_sec"`
	Latency   benchkv.Latency `json:"latency"`
	ClientCPU float64         `json:"client_cpu_us_per_req"`
}

func newBenchCatalogCmd() *cobra.Command {
	b := catalogBench{
		addr: "127.0.0.1:8500", instances: 10000, nodes: 500, perService: 20, register: true,
		concurrency: 64, duration: 10 * time.Second, warmup: time.Second, format: "text",
	}
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Fill the catalog with many instances and measure health/service lookups",
		Long: `Registers -instances service instances spread over -nodes nodes through
PUT /v1/catalog/register (each instance with a passing service check, -per-service
instances per service, services named bench-0, bench-1, ...), then runs a closed-loop
load of -c workers, each with one request in flight on its own keep-alive connection,
asking GET /v1/health/service/<-service>?passing for -d after a warm-up, and prints
requests per second and latency percentiles. -register=false skips the registration
(the catalog is already filled). The client is a minimal HTTP/1.1 one, so the load
generator costs little of the machine it shares with the agent.

-rate R makes the load open: the workers together start R requests per second on a
fixed schedule, each worker every c/R seconds, and a request's latency counts from
when it was due, so a worker held up by a slow answer reports the wait of the requests
it could not start (no coordinated omission). A closed loop at full speed measures the
agent saturated, where latency is mostly queueing; a rate below that measures the
latency clients see at that load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if b.instances < 1 || b.nodes < 1 || b.perService < 1 || b.concurrency < 1 || b.duration <= 0 {
				return usageErrorf("-instances, -nodes, -per-service, -c and -d must be positive")
			}
			if b.rate < 0 || b.rate > 10_000_000 {
				return usageErrorf("-rate %v: want 0 (closed loop) up to 10000000 requests per second", b.rate)
			}
			if b.format != "text" && b.format != "json" {
				return usageErrorf("-format %q: want text or json", b.format)
			}
			u, err := parseHTTPAddr(b.addr)
			if err != nil {
				return usageErrorf("-http-addr: %v", err)
			}
			if u.Scheme != "http" {
				return usageErrorf("-http-addr: bench catalog speaks plain HTTP only")
			}
			r, err := b.run(cmd.Context(), u.Host, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return r.write(cmd.OutOrStdout(), b.format)
		},
	}
	gofs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	gofs.StringVar(&b.addr, "http-addr", b.addr, "the agent's HTTP API `address`")
	gofs.IntVar(&b.instances, "instances", b.instances, "service instances to register")
	gofs.IntVar(&b.nodes, "nodes", b.nodes, "nodes to spread them over")
	gofs.IntVar(&b.perService, "per-service", b.perService, "instances per service")
	gofs.BoolVar(&b.register, "register", b.register, "register the instances first")
	gofs.IntVar(&b.concurrency, "c", b.concurrency, "concurrent workers, each with one request in flight")
	gofs.Float64Var(&b.rate, "rate", 0, "requests per second over all workers on a fixed schedule (0: closed loop, as fast as answered)")
	gofs.DurationVar(&b.duration, "d", b.duration, "how long to measure, after the warm-up")
	gofs.DurationVar(&b.warmup, "warmup", b.warmup, "unmeasured run before measuring")
	gofs.StringVar(&b.service, "service", "bench-0", "service to look up")
	gofs.StringVar(&b.format, "format", b.format, "output format: `text|json`")
	cmd.Flags().AddGoFlagSet(gofs)
	return cmd
}

func (b catalogBench) run(ctx context.Context, host string, progress io.Writer) (catalogResult, error) {
	res := catalogResult{Instances: b.instances, Nodes: b.nodes, Services: (b.instances + b.perService - 1) / b.perService, C: b.concurrency, Rate: b.rate}
	client := newRawKV([]string{host}, b.concurrency)
	defer client.Close()
	if b.register {
		start := time.Now()
		if err := b.fill(ctx, client); err != nil {
			return res, err
		}
		res.RegisterS = time.Since(start).Seconds()
		fmt.Fprintf(progress, "registered %d instances on %d nodes in %.1f s\n", b.instances, b.nodes, res.RegisterS)
	}
	res.Path = "/v1/health/service/" + url.PathEscape(b.service) + "?passing"
	status, _, err := client.do(ctx, "GET", res.Path, nil)
	if err != nil || status != 200 {
		return res, fmt.Errorf("GET %s: status %d, %v", res.Path, status, err)
	}

	var measuring atomic.Bool
	var requests, errs atomic.Uint64
	hists := make([]*benchkv.Histogram, b.concurrency)
	// Workers stop starting requests at end and finish the one in flight; requests
	// get no deadline of their own, so none fails merely because the run ended.
	begin := time.Now()
	end := begin.Add(b.warmup + b.duration)
	var every time.Duration // between one worker's requests, with -rate
	if b.rate > 0 {
		every = time.Duration(float64(b.concurrency) / b.rate * float64(time.Second))
	}
	var wg sync.WaitGroup
	for w := range b.concurrency {
		hists[w] = benchkv.NewHistogram()
		wg.Add(1)
		// With -rate, the workers' schedules are spread evenly over one interval.
		due := begin.Add(every * time.Duration(w) / time.Duration(b.concurrency))
		go func(h *benchkv.Histogram) {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				if every > 0 {
					if wait := time.Until(due); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							return
						}
					}
					t, due = due, due.Add(every)
					if !t.Before(end) {
						return
					}
				}
				status, _, err := client.do(ctx, "GET", res.Path, nil)
				if !measuring.Load() {
					continue
				}
				if err != nil || status != 200 {
					errs.Add(1)
					continue
				}
				h.Record(time.Since(t))
				requests.Add(1)
			}
		}(hists[w])
	}
	select {
	case <-time.After(b.warmup):
	case <-ctx.Done():
	}
	cpu0 := benchkv.ProcessCPU()
	measuring.Store(true)
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	cpu := (benchkv.ProcessCPU() - cpu0).Seconds()
	all := benchkv.NewHistogram()
	for _, h := range hists {
		all.Merge(h)
	}
	res.Requests, res.Errors = requests.Load(), errs.Load()
	res.ReqPerSec = float64(res.Requests) / elapsed.Seconds()
	res.Latency = benchkv.LatencyOf(all)
	if res.Requests > 0 {
		res.ClientCPU = cpu * 1e6 / float64(res.Requests)
	}
	return res, ctx.Err()
}

// fill registers the instances, 16 at a time. Instance i is bench-<i/per-service> on
// node-<i%nodes>, so every service spreads over per-service nodes.
func (b catalogBench) fill(ctx context.Context, client *rawKV) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.instances || ctx.Err() != nil {
					return
				}
				node := fmt.Sprintf("node-%d", i%b.nodes)
				svc := fmt.Sprintf("bench-%d", i/b.perService)
				id := fmt.Sprintf("%s-%d", svc, i%b.perService)
				body, _ := json.Marshal(map[string]any{
					"Node": node, "Address": fmt.Sprintf("10.%d.%d.%d", i%b.nodes/65536, i%b.nodes/256%256, i%b.nodes%256),
					"Service": map[string]any{"ID": id, "Service": svc, "Port": 8000 + i%1000, "Tags": []string{"v1", "bench"},
						"Meta": map[string]string{"version": "1.0"}},
					"Check": map[string]any{"CheckID": "service:" + id, "Name": "bench", "Status": "passing", "ServiceID": id},
				})
				status, snippet, err := client.do(ctx, "PUT", "/v1/catalog/register", body)
				if err == nil && status != 200 {
					err = fmt.Errorf("register %s: %d %s", id, status, firstLine(snippet))
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (r catalogResult) write(w io.Writer, format string) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	l := r.Latency
	rate := ""
	if r.Rate > 0 {
		rate = fmt.Sprintf("  rate=%.0f/s", r.Rate)
	}
	_, err := fmt.Fprintf(w, "GET %s  c=%d%s  (%d instances on %d nodes, %d services)\n"+
		"requests %d ok  %.1f req/s  %d errors\n"+
		"latency  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n"+
		"client   %.1fµs CPU/req\n",
		r.Path, r.C, rate, r.Instances, r.Nodes, r.Services, r.Requests, r.ReqPerSec, r.Errors,
		benchkv.FormatLatency(l.P50), benchkv.FormatLatency(l.P90), benchkv.FormatLatency(l.P99),
		benchkv.FormatLatency(l.P999), benchkv.FormatLatency(l.Max), benchkv.FormatLatency(l.Mean), r.ClientCPU)
	return err
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchSessionCmd) }

// sessionBenchResult is what `wolke bench session` reports. One op is a session create
// followed by its destroy: two Raft writes.
type sessionBenchResult struct {
	Concurrency int     `json:"concurrency"`
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
}

func newBenchSessionCmd() *cobra.Command {
	var (
		concurrency int
		duration    time.Duration
		ttl         string
		format      string
	)
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Measure session create+destroy throughput and latency",
		Long: `Runs -c clients that each create a session (PUT /v1/session/create) and destroy it
(PUT /v1/session/destroy/ID) in a loop for -duration, and reports create+destroy pairs
per second and the latency of one pair (p50, p99, max). Works against wolke or Consul.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.IntVar(&concurrency, "c", 16, "concurrent clients")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to run")
	f.StringVar(&ttl, "ttl", "", "session TTL (default: none)")
	f.StringVar(&format, "format", "text", "output: text or json")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if concurrency < 1 || duration <= 0 {
			return usageErrorf("-c and -duration must be positive")
		}
		if format != "text" && format != "json" {
			return usageErrorf("-format must be text or json")
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		res, err := runSessionBench(cmd.Context(), c, concurrency, duration, ttl)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if format == "json" {
			return json.NewEncoder(out).Encode(res)
		}
		_, err = fmt.Fprintf(out, "session create+destroy: %d ops in %.1fs with %d clients: %.0f ops/s (%.0f Raft writes/s); latency p50 %.2fms p99 %.2fms max %.2fms; %d errors\n",
			res.Ops, res.Seconds, res.Concurrency, res.OpsPerSec, 2*res.OpsPerSec, res.P50Ms, res.P99Ms, res.MaxMs, res.Errors)
		return err
	}
	return cmd
}

func runSessionBench(ctx context.Context, c *api.Client, concurrency int, duration time.Duration, ttl string) (sessionBenchResult, error) {
	// One create+destroy first, so that a wrong address fails fast.
	id, _, err := c.Session().Create(&api.SessionEntry{TTL: ttl}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return sessionBenchResult{}, fmt.Errorf("creating a session: %w", err)
	}
	if _, err := c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return sessionBenchResult{}, fmt.Errorf("destroying a session: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			wo := (&api.WriteOptions{}).WithContext(ctx)
			for ctx.Err() == nil {
				t0 := time.Now()
				id, _, err := c.Session().Create(&api.SessionEntry{TTL: ttl}, wo)
				if err == nil {
					_, err = c.Session().Destroy(id, wo)
				}
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	res := sessionBenchResult{Concurrency: concurrency, Ops: len(lat), Errors: errs, Seconds: el.Seconds()}
	if len(lat) == 0 {
		return res, fmt.Errorf("no session create+destroy succeeded (%d errors)", errs)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res.OpsPerSec = float64(len(lat)) / el.Seconds()
	res.P50Ms = ms(lat[len(lat)/2])
	res.P99Ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	res.MaxMs = ms(lat[len(lat)-1])
	return res, nil
}

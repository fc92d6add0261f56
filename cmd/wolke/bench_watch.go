package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchWatchCmd) }

// watchResult is what `wolke bench watch` reports.
type watchResult struct {
	Watchers        int     `json:"watchers"`
	Prefix          bool    `json:"prefix"`
	Rounds          int     `json:"rounds"`
	BaselineRSS     float64 `json:"baseline_rss_bytes"`
	BlockedRSS      float64 `json:"blocked_rss_bytes"`
	BytesPerWatcher float64 `json:"bytes_per_watcher"`
	WriteAckMs      float64 `json:"write_ack_ms"`
	FanoutP50Ms     float64 `json:"fanout_p50_ms"`
	FanoutP99Ms     float64 `json:"fanout_p99_ms"`
	FanoutMaxMs     float64 `json:"fanout_max_ms"`
	Spurious        int     `json:"spurious_wakeups"`
}

func newBenchWatchCmd() *cobra.Command {
	var (
		httpAddr string
		n        int
		rounds   int
		prefix   bool
		key      string
		format   string
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Measure blocking-query fan-out: N blocked readers, one write",
		Long: `Opens -n connections that each hold a blocking GET on one key (or, with -prefix, a
recursive read of its parent prefix), then writes the key and measures how long each
reader takes to get its answer, and how much memory the agent holds per blocked reader
(from its process_resident_memory_bytes metric, so the agent must be wolke). Before the
write it also writes an unrelated key and counts readers that woke for it (they should
not). Each process may need 'ulimit -n' above -n.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 || rounds < 1 {
				return usageErrorf("-n and -rounds must be at least 1")
			}
			if format != "text" && format != "json" {
				return usageErrorf("-format must be text or json")
			}
			if httpAddr == "" {
				httpAddr = firstEnv("WOLKE_HTTP_ADDR", "CONSUL_HTTP_ADDR")
			}
			if httpAddr == "" {
				httpAddr = defaultHTTPAddr
			}
			base, err := parseHTTPAddr(httpAddr)
			if err != nil {
				return usageErrorf("-http-addr: %v", err)
			}
			res, err := runWatchBench(cmd.Context(), base.String(), n, rounds, key, prefix)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				return json.NewEncoder(out).Encode(res)
			}
			what := "key"
			if res.Prefix {
				what = "prefix"
			}
			fmt.Fprintf(out, "%d blocked readers on one %s, %d rounds\n", res.Watchers, what, res.Rounds)
			fmt.Fprintf(out, "agent memory: %.1f MiB idle, %.1f MiB with readers blocked: %.1f KiB per reader\n",
				res.BaselineRSS/(1<<20), res.BlockedRSS/(1<<20), res.BytesPerWatcher/1024)
			fmt.Fprintf(out, "write acknowledged after %.2f ms; readers answered p50 %.1f ms, p99 %.1f ms, last %.1f ms\n",
				res.WriteAckMs, res.FanoutP50Ms, res.FanoutP99Ms, res.FanoutMaxMs)
			fmt.Fprintf(out, "readers woken by an unrelated write: %d\n", res.Spurious)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&httpAddr, "http-addr", "", "agent address (default WOLKE_HTTP_ADDR, CONSUL_HTTP_ADDR, then 127.0.0.1:8500)")
	f.IntVar(&n, "n", 10000, "blocked readers")
	f.IntVar(&rounds, "rounds", 3, "writes to measure (each wakes all readers, which then block again)")
	f.BoolVar(&prefix, "prefix", false, "block on a recursive read of the key's prefix instead of the key")
	f.StringVar(&key, "key", "bench/watch/key", "key to write")
	f.StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func runWatchBench(ctx context.Context, base string, n, rounds int, key string, prefix bool) (*watchResult, error) {
	tr := &http.Transport{
		MaxIdleConnsPerHost: n + 16,
		MaxConnsPerHost:     0,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	readPath := base + "/v1/kv/" + key
	if prefix {
		readPath = base + "/v1/kv/" + key[:strings.LastIndexByte(key, '/')+1] + "?recurse"
	}
	sep := "?"
	if prefix {
		sep = "&"
	}
	put := func(k, v string) (time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/kv/"+k, strings.NewReader(v))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("write %s: HTTP %d", k, resp.StatusCode)
		}
		return time.Since(start), nil
	}
	read := func(index uint64) (uint64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readPath+sep+"index="+strconv.FormatUint(index, 10)+"&wait=10m", nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	}
	if _, err := put(key, "0"); err != nil {
		return nil, err
	}
	baseline, err := agentMetric(ctx, client, base, "process_resident_memory_bytes")
	if err != nil {
		return nil, err
	}
	res := &watchResult{Watchers: n, Prefix: prefix, Rounds: rounds, BaselineRSS: baseline}
	var lat []time.Duration
	for r := 1; r <= rounds; r++ {
		index, err := read(0)
		if err != nil {
			return nil, err
		}
		answered := make([]time.Time, n)
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := read(index); err != nil {
					errs <- err
					return
				}
				answered[i] = time.Now()
			}(i)
		}
		// Wait until the agent holds every reader (its blocking-queries gauge).
		deadline := time.Now().Add(2 * time.Minute)
		for {
			blocked, err := agentMetric(ctx, client, base, "wolke_http_blocking_queries")
			if err != nil {
				return nil, err
			}
			if blocked >= float64(n) {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("only %.0f of %d readers blocked after 2 minutes", blocked, n)
			}
			select {
			case err := <-errs:
				return nil, fmt.Errorf("reader failed: %w", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		if r == 1 {
			res.BlockedRSS, _ = agentMetric(ctx, client, base, "process_resident_memory_bytes")
			res.BytesPerWatcher = (res.BlockedRSS - baseline) / float64(n)
		}
		// An unrelated write (outside the key and its prefix) must wake nobody.
		if _, err := put("_unrelated/"+strconv.Itoa(r), "x"); err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond) // long enough for a wrongly woken reader to answer
		for i := range answered {
			if !answered[i].IsZero() {
				res.Spurious++
			}
		}
		start := time.Now()
		ack, err := put(key, strconv.Itoa(r))
		if err != nil {
			return nil, err
		}
		res.WriteAckMs += float64(ack.Microseconds()) / 1000 / float64(rounds)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, fmt.Errorf("reader failed: %w", err)
		}
		for _, t := range answered {
			lat = append(lat, t.Sub(start))
		}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.FanoutP50Ms = ms(lat[len(lat)/2])
	res.FanoutP99Ms = ms(lat[len(lat)*99/100])
	res.FanoutMaxMs = ms(lat[len(lat)-1])
	return res, nil
}

// agentMetric reads one unlabelled sample from the agent's Prometheus text metrics.
func agentMetric(ctx context.Context, client *http.Client, base, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/agent/metrics?format=prometheus", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read agent metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err
		}
	}
	return 0, fmt.Errorf("agent metrics have no %s (is the agent wolke?)", name)
}

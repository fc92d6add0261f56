package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

// benchSubcommands holds the constructors of `wolke bench` subcommands; other files may
// append theirs in an init function.
var benchSubcommands = []func() *cobra.Command{newBenchKVCmd}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Generate load against an agent and measure throughput and latency",
		Args:  cobra.NoArgs,
	}
	for _, c := range benchSubcommands {
		cmd.AddCommand(c())
	}
	return cmd
}

const defaultHTTPAddr = "127.0.0.1:8500"

func newBenchKVCmd() *cobra.Command {
	opts := benchkv.DefaultOptions()
	var httpAddr, client string
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Load a Consul-compatible KV endpoint with puts and gets",
		Long: `Runs a closed-loop load of -c workers against the KV API of a wolke or Consul agent
(PUT and GET /v1/kv/<key>) for -d after a warm-up, and prints operations per second and
latency percentiles. Workloads: put, get (reads with -read-mode default, consistent or
stale, after writing every key once unless -preload=false) and mixed (-read-share reads).
The agent's address comes from -http-addr, else WOLKE_HTTP_ADDR, else CONSUL_HTTP_ADDR.
Several agents, comma-separated (the servers of a cluster), share the workers'
connections round-robin; a failed connection is replaced by one to the next agent, so
the load moves off a server that died. The output's "longest stall" is the longest time
in which no operation succeeded (for example while a new leader is elected).
The same load against etcd: the bench module in the source tree (cd bench && go run . kv).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unexpected argument %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("http-addr") {
				if v := os.Getenv("CONSUL_HTTP_ADDR"); v != "" {
					httpAddr = v
				}
			}
			bases, err := parseHTTPAddrs(httpAddr)
			if err != nil {
				return usageErrorf("-http-addr: %v", err)
			}
			if err := opts.Validate(); err != nil {
				return usageErrorf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			conns := max(opts.Config.Concurrency, opts.Config.PreloadConcurrency)
			var d benchkv.Driver
			switch {
			case client == "raw" && allHTTP(bases):
				hosts := make([]string, len(bases))
				for i, b := range bases {
					hosts[i] = b.Host
				}
				d = newRawKV(hosts, conns)
			case client == "raw" || client == "net/http":
				d = newConsulKV(bases, conns, false)
			case client == "h2c" && allHTTP(bases):
				d = newConsulKV(bases, conns, true)
			case client == "h2c":
				return usageErrorf("-client h2c needs http:// addresses")
			default:
				return usageErrorf("-client %q: want raw, net/http or h2c", client)
			}
			defer d.Close()
			stderr := cmd.ErrOrStderr()
			live := stderr == os.Stderr && benchkv.IsTerminal(os.Stderr)
			return opts.Execute(cmd.Context(), d, cmd.OutOrStdout(), stderr, live)
		},
	}
	gofs := flag.NewFlagSet("kv", flag.ContinueOnError)
	opts.Register(gofs)
	cmd.Flags().AddGoFlagSet(gofs)
	cmd.Flags().StringVar(&httpAddr, "http-addr", defaultHTTPAddr, "agent HTTP API address (host:port or http://host:port), or several, comma-separated")
	cmd.Flags().StringVar(&client, "client", "raw", "HTTP client: raw (a minimal HTTP/1.1 client, cheapest on a shared machine), net/http (Go's Transport), or h2c (Go's Transport speaking HTTP/2 without TLS, requests multiplexed over few connections, as etcd's gRPC clients do); https always uses net/http")
	return cmd
}

// parseHTTPAddrs parses a comma-separated list of agent addresses (parseHTTPAddr).
func parseHTTPAddrs(s string) ([]*url.URL, error) {
	var bases []*url.URL
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("%q: empty address in the list", s)
		}
		u, err := parseHTTPAddr(a)
		if err != nil {
			return nil, err
		}
		bases = append(bases, u)
	}
	return bases, nil
}

func allHTTP(bases []*url.URL) bool {
	for _, b := range bases {
		if b.Scheme != "http" {
			return false
		}
	}
	return true
}

// parseHTTPAddr accepts Consul's forms of an agent address: host:port, http://host:port
// or https://host:port.
func parseHTTPAddr(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return nil, fmt.Errorf("%q: want host:port", u.Host)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%q: want no path or query", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// consulKV drives Consul's KV HTTP API. It sits on the same cores as the server it
// measures, so it stays lean: one Transport with an idle connection kept for every
// worker, RoundTrip without http.Client (no redirects, cookies or timers), no
// compression, and bodies drained into a shared discard so connections are reused.
//
// With several agents, requests go to each in turn (the Transport keeps a pool per
// agent), and a request whose connection could not be dialled is sent to the next
// agent, so a server that died costs only the requests it had in flight.
type consulKV struct {
	transport *http.Transport
	bases     []*url.URL
	next      atomic.Uint64
	// header is shared by every request; RoundTrip does not modify requests.
	header http.Header
}

var _ benchkv.Driver = (*consulKV)(nil)

// newConsulKV keeps up to maxConns idle connections per agent, which should be the
// largest number of requests in flight at once: any fewer, and connections are closed
// and reopened. bases holds at least one agent address from parseHTTPAddr.
func newConsulKV(bases []*url.URL, maxConns int, h2c bool) *consulKV {
	t := &http.Transport{
		// Benchmarks go straight to the agent, never through an environment proxy.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if h2c {
		// Only HTTP/2 with prior knowledge: a server that does not speak it fails the
		// first request instead of being measured over HTTP/1.1 by mistake.
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return &consulKV{transport: t, bases: bases, header: http.Header{}}
}

// readQuery maps a read mode to Consul's query parameter.
var readQuery = map[benchkv.ReadMode]string{
	benchkv.ReadDefault:    "",
	benchkv.ReadConsistent: "consistent",
	benchkv.ReadStale:      "stale",
}

// errAnswer reports an answer that the KV API should not give.
var errAnswer = errors.New("unexpected answer")

func (d *consulKV) request(ctx context.Context, method, key, query string, body []byte) (*http.Response, error) {
	var err error
	first := d.next.Add(1) - 1
	for i := range uint64(len(d.bases)) {
		base := d.bases[(first+i)%uint64(len(d.bases))]
		req := &http.Request{
			Method:     method,
			URL:        &url.URL{Scheme: base.Scheme, Host: base.Host, Path: "/v1/kv/" + key, RawQuery: query},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     d.header,
			Host:       base.Host,
		}
		if body != nil {
			req.Body = &bodyReader{Reader: bytes.NewReader(body)}
			req.ContentLength = int64(len(body))
		}
		var resp *http.Response
		if resp, err = d.transport.RoundTrip(req.WithContext(ctx)); err == nil || !isDialError(err) || ctx.Err() != nil {
			return resp, err
		}
		// Nothing was sent: the request may go to the next agent.
	}
	return nil, err
}

// isDialError reports whether err is a failure to connect, before a request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// bodyReader makes a request body with one allocation instead of two (NopCloser).
type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

// Put writes with PUT /v1/kv/<key>; the API answers true.
func (d *consulKV) Put(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{} // a body of zero bytes, not none: Content-Length 0
	}
	resp, err := d.request(ctx, http.MethodPut, key, "", value)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	var buf [128]byte
	n, _ := io.ReadFull(resp.Body, buf[:])
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, buf[:n])
	}
	if string(bytes.TrimSpace(buf[:n])) != "true" {
		return fmt.Errorf("%w: PUT answered %q", errAnswer, buf[:n])
	}
	return nil
}

// Get reads with GET /v1/kv/<key>, discarding the body; 404 is benchkv.ErrNotFound.
func (d *consulKV) Get(ctx context.Context, key string, mode benchkv.ReadMode) error {
	resp, err := d.request(ctx, http.MethodGet, key, readQuery[mode], nil)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return benchkv.ErrNotFound
	}
	var buf [128]byte
	n, _ := io.ReadFull(resp.Body, buf[:])
	return statusError(resp, buf[:n])
}

// statusError keeps the key out of the message, so that Result's error samples group
// by cause.
func statusError(resp *http.Response, body []byte) error {
	line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	return fmt.Errorf("%w: %s %s: %s", errAnswer, resp.Request.Method, resp.Status, line)
}

// drain reads what is left of a body so that the connection can carry the next request.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, body)
	_ = body.Close()
}

// Close closes idle connections.
func (d *consulKV) Close() error {
	d.transport.CloseIdleConnections()
	return nil
}

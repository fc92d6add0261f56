package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

// fakeKV serves the two KV calls the bench uses, the way Consul answers them.
type fakeKV struct {
	mu      sync.Mutex
	data    map[string][]byte
	queries map[string]int // raw query of GETs -> count
	fail    atomic.Bool    // answer 500 to everything
	conns   atomic.Int64   // connections opened
	h2      atomic.Int64   // requests that came over HTTP/2
	reqs    atomic.Int64   // KV requests served
}

func newFakeKV(t *testing.T) (*fakeKV, *httptest.Server) {
	t.Helper()
	kv := &fakeKV{data: map[string][]byte{}, queries: map[string]int{}}
	srv := httptest.NewUnstartedServer(kv)
	// As the agent does: HTTP/1.1 and HTTP/2 with prior knowledge on one port.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			kv.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return kv, srv
}

func (kv *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	kv.reqs.Add(1)
	if r.ProtoMajor == 2 {
		kv.h2.Add(1)
	}
	if kv.fail.Load() {
		http.Error(w, "rpc error: no leader\nsecond line", http.StatusInternalServerError)
		return
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		kv.data[key] = b
		io.WriteString(w, "true")
	case http.MethodGet:
		kv.queries[r.URL.RawQuery]++
		v, ok := kv.data[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode([]map[string]any{{"Key": key, "Value": base64.StdEncoding.EncodeToString(v), "Flags": 0}})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func TestParseHTTPAddr(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:8500", want: "http://127.0.0.1:8500"},
		{in: "http://localhost:18500", want: "http://localhost:18500"},
		{in: "https://[::1]:8501/", want: "https://[::1]:8501"},
		{in: "localhost", err: "want host:port"},
		{in: "http://localhost", err: "want host:port"},
		{in: "unix:///tmp/consul.sock", err: `scheme "unix"`},
		{in: "http://127.0.0.1:8500/v1", err: "want no path"},
		{in: "http://127.0.0.1:8500?x=1", err: "want no path"},
	}
	for _, tt := range tests {
		u, err := parseHTTPAddr(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseHTTPAddr(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || u.String() != tt.want):
			t.Errorf("parseHTTPAddr(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestParseHTTPAddrs(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:8500", want: "http://127.0.0.1:8500"},
		{in: "127.0.0.1:1, https://[::1]:2,http://localhost:3", want: "http://127.0.0.1:1 https://[::1]:2 http://localhost:3"},
		{in: "127.0.0.1:1,,127.0.0.1:2", err: "empty address"},
		{in: "127.0.0.1:1,", err: "empty address"},
		{in: "127.0.0.1:1,localhost", err: `"localhost": want host:port`},
	}
	for _, tt := range tests {
		us, err := parseHTTPAddrs(tt.in)
		var got []string
		for _, u := range us {
			got = append(got, u.String())
		}
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseHTTPAddrs(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || strings.Join(got, " ") != tt.want):
			t.Errorf("parseHTTPAddrs(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// TestKVDriverSeveralAgents runs a load against two agents and an address where
// nothing listens, then "kills" one agent in the middle of a second run: the workers'
// requests spread over the live agents, and move to the survivor within a request or
// two each.
func TestKVDriverSeveralAgents(t *testing.T) {
	drivers := map[string]func(bases []*url.URL) benchkv.Driver{
		"net/http": func(bases []*url.URL) benchkv.Driver { return newConsulKV(bases, 8, false) },
		"raw": func(bases []*url.URL) benchkv.Driver {
			var hosts []string
			for _, b := range bases {
				hosts = append(hosts, b.Host)
			}
			return newRawKV(hosts, 8)
		},
	}
	for name, newDriver := range drivers {
		t.Run(name, func(t *testing.T) {
			kvA, srvA := newFakeKV(t)
			kvB, srvB := newFakeKV(t)
			bases, err := parseHTTPAddrs(srvA.URL + "," + deadAddr(t) + "," + srvB.URL)
			if err != nil {
				t.Fatal(err)
			}
			d := newDriver(bases)
			defer d.Close()
			cfg := benchkv.DefaultConfig()
			cfg.Workload, cfg.Concurrency, cfg.Warmup, cfg.Duration, cfg.KeyCount = benchkv.WorkloadPut, 8, 0, 100*time.Millisecond, 100
			r, err := benchkv.Run(context.Background(), cfg, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, b := kvA.reqs.Load(), kvB.reqs.Load()
			if r.Errors != 0 || r.Ops == 0 || a < int64(r.Ops)/4 || b < int64(r.Ops)/4 {
				t.Fatalf("%d ops, %d errors (%q); agents served %d and %d requests, want both a fair share and no errors", r.Ops, r.Errors, r.ErrorSamples, a, b)
			}

			// Kill A a third of the way into a run: no new connections, and the open
			// ones reset.
			cfg.Duration = 300 * time.Millisecond
			var afterKill int64
			kill := time.AfterFunc(100*time.Millisecond, func() {
				srvA.Listener.Close()
				srvA.CloseClientConnections()
				afterKill = kvB.reqs.Load()
			})
			defer kill.Stop()
			r, err = benchkv.Run(context.Background(), cfg, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			served := kvB.reqs.Load() - afterKill
			// The bound on the stall only has to tell "moved on" from "waited for the dead
			// agent" (a connect or read timeout, seconds); CI shares two cores.
			if r.Errors > 2*8 || served < int64(r.Ops)/4 || r.LongestStall > 250*time.Millisecond {
				t.Errorf("after the kill: %d errors (%q), B served %d of %d requests, longest stall %v",
					r.Errors, r.ErrorSamples, served, r.Ops, r.LongestStall)
			}
		})
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestConsulKVDriver(t *testing.T) {
	drivers := map[string]func(base *url.URL) benchkv.Driver{
		"net/http": func(base *url.URL) benchkv.Driver { return newConsulKV([]*url.URL{base}, 4, false) },
		"h2c":      func(base *url.URL) benchkv.Driver { return newConsulKV([]*url.URL{base}, 4, true) },
		"raw":      func(base *url.URL) benchkv.Driver { return newRawKV([]string{base.Host}, 4) },
	}
	for name, newDriver := range drivers {
		t.Run(name, func(t *testing.T) { testKVDriver(t, newDriver, name == "h2c") })
	}
}

func testKVDriver(t *testing.T, newDriver func(*url.URL) benchkv.Driver, h2 bool) {
	kv, srv := newFakeKV(t)
	base, err := parseHTTPAddr(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(base)
	defer d.Close()
	ctx := context.Background()

	if err := d.Get(ctx, "b/missing", benchkv.ReadDefault); !errors.Is(err, benchkv.ErrNotFound) {
		t.Fatalf("Get of a missing key = %v, want ErrNotFound", err)
	}
	for _, key := range []string{"b/1", "b/with space", "b/%25"} {
		if err := d.Put(ctx, key, []byte("value of "+key)); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
		kv.mu.Lock()
		got := string(kv.data[key])
		kv.mu.Unlock()
		if got != "value of "+key {
			t.Fatalf("server stored %q under %q", got, key)
		}
	}
	if err := d.Put(ctx, "b/empty", nil); err != nil {
		t.Fatalf("Put of an empty value: %v", err)
	}
	for _, mode := range []benchkv.ReadMode{benchkv.ReadDefault, benchkv.ReadConsistent, benchkv.ReadStale} {
		if err := d.Get(ctx, "b/1", mode); err != nil {
			t.Fatalf("Get(%s): %v", mode, err)
		}
	}
	kv.mu.Lock()
	wantQueries := map[string]int{"": 2, "consistent": 1, "stale": 1}
	for q, n := range wantQueries {
		if kv.queries[q] != n {
			t.Errorf("server saw %d GETs with query %q, want %d (all: %v)", kv.queries[q], q, n, kv.queries)
		}
	}
	kv.mu.Unlock()

	kv.fail.Store(true)
	for name, err := range map[string]error{
		"put": d.Put(ctx, "b/secret-key", []byte("x")),
		"get": d.Get(ctx, "b/secret-key", benchkv.ReadDefault),
	} {
		if !errors.Is(err, errAnswer) || !strings.Contains(err.Error(), "500 Internal Server Error: rpc error: no leader") ||
			strings.Contains(err.Error(), "secret-key") || strings.Contains(err.Error(), "second line") {
			t.Errorf("%s against a failing server: %v; want status and first line, without the key", name, err)
		}
	}
	if n := kv.conns.Load(); n != 1 {
		t.Errorf("sequential requests opened %d connections, want 1", n)
	}
	if n, all := kv.h2.Load(), kv.reqs.Load(); h2 && n != all || !h2 && n != 0 {
		t.Errorf("%d of %d requests came over HTTP/2 (h2c driver: %v)", n, all, h2)
	}
}

func TestConsulKVDriverRejectsFalse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "false")
	}))
	defer srv.Close()
	base, _ := parseHTTPAddr(srv.URL)
	d := newConsulKV([]*url.URL{base}, 1, false)
	defer d.Close()
	if err := d.Put(context.Background(), "k", []byte("v")); !errors.Is(err, errAnswer) || !strings.Contains(err.Error(), `"false"`) {
		t.Fatalf("Put answered false: %v, want errAnswer", err)
	}
}

// runBench runs the wolke command line as main does, with output captured.
func runBench(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(normalizeArgs(root, args))
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestBenchKVCommand(t *testing.T) {
	kv, srv := newFakeKV(t)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		queries string // GET query the server must have seen
	}{
		{name: "put by flag", args: []string{"-workload", "put", "-http-addr", srv.URL}},
		{name: "get stale via WOLKE_HTTP_ADDR", env: map[string]string{"WOLKE_HTTP_ADDR": srv.URL, "CONSUL_HTTP_ADDR": "127.0.0.1:1"},
			args: []string{"-workload=get", "-read-mode", "stale"}, queries: "stale"},
		{name: "mixed consistent via CONSUL_HTTP_ADDR", env: map[string]string{"CONSUL_HTTP_ADDR": strings.TrimPrefix(srv.URL, "http://")},
			args: []string{"--workload", "mixed", "-read-mode=consistent"}, queries: "consistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"WOLKE_HTTP_ADDR", "CONSUL_HTTP_ADDR"} {
				if v, ok := tt.env[k]; ok {
					t.Setenv(k, v)
				} else {
					unsetenv(t, k)
				}
			}
			kv.mu.Lock()
			clear(kv.queries)
			kv.mu.Unlock()
			args := append([]string{"bench", "kv", "-c", "8", "-d", "100ms", "-warmup", "0", "-keys", "50", "-preload-c", "4", "-format", "json", "-label", "fake"}, tt.args...)
			out, err := runBench(t, args...)
			if err != nil {
				t.Fatalf("wolke %s: %v", strings.Join(args, " "), err)
			}
			var r benchkv.Result
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if r.Ops == 0 || r.Errors != 0 || r.Misses != 0 || r.Concurrency != 8 || r.Label != "fake" || r.Latency.P99 <= 0 {
				t.Errorf("result %+v", r)
			}
			kv.mu.Lock()
			defer kv.mu.Unlock()
			if tt.queries != "" && kv.queries[tt.queries] == 0 {
				t.Errorf("server saw GET queries %v, want %q", kv.queries, tt.queries)
			}
		})
	}
	// The transport may dial a few more than it keeps when a dial races with a request
	// that frees a connection, but never one per request.
	if n := kv.conns.Load(); n > 3*2*8 {
		t.Errorf("three runs of 8 workers opened %d connections; connections are not reused", n)
	}
}

func unsetenv(t *testing.T, key string) {
	t.Helper()
	// t.Setenv restores the old value afterwards; unsetting then makes it absent.
	t.Setenv(key, "")
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}

func TestBenchKVUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-c", "0"}, "concurrency 0"},
		{[]string{"-c", "0", "-value-size", "-1"}, "concurrency 0: want 1 to 10000; value size -1"},
		{[]string{"-workload", "scan"}, `workload "scan"`},
		{[]string{"-format", "yaml"}, `format "yaml"`},
		{[]string{"-read-mode", "fresh"}, `read mode "fresh"`},
		{[]string{"-http-addr", "localhost"}, "-http-addr: \"localhost\": want host:port"},
		{[]string{"-d", "soon"}, "invalid argument"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runBench(t, append([]string{"bench", "kv"}, tt.args...)...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a one-line usage error (exit 2) containing %q", err, tt.want)
			}
		})
	}
}

func TestBenchKVUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = runBench(t, "bench", "kv", "-http-addr", addr, "-d", "10s")
	if err == nil || !strings.Contains(err.Error(), "store not usable") {
		t.Fatalf("error %v, want a prompt 'store not usable'", err)
	}
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		t.Fatalf("unreachable store reported as usage error: %v", err)
	}
}

// BenchmarkConsulKVDriver measures the client's own cost: the server is a raw TCP loop
// that answers every request with a canned response, so allocations and most of the
// time per operation are the driver's and net/http's.
func BenchmarkConsulKVDriver(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveCanned(c)
		}
	}()
	base, _ := parseHTTPAddr(l.Addr().String())
	d := newConsulKV([]*url.URL{base}, 1, false)
	defer d.Close()
	value := bytes.Repeat([]byte("v"), 256)
	ctx := context.Background()
	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Put(ctx, "bench/key", value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Get(ctx, "bench/key", benchkv.ReadDefault); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// serveCanned answers each HTTP/1.1 request on c with a fixed Consul-like response:
// true for PUT, a one-entry JSON array for GET.
func serveCanned(c net.Conn) {
	defer c.Close()
	const (
		putResp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 7\r\nContent-Length: 4\r\n\r\ntrue"
		getBody = `[{"LockIndex":0,"Key":"bench/key","Flags":0,"Value":"dmFsdWU=","CreateIndex":5,"ModifyIndex":7}]`
	)
	getResp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 7\r\nX-Consul-Knownleader: true\r\nX-Consul-Lastcontact: 0\r\nContent-Length: %d\r\n\r\n%s", len(getBody), getBody)
	r := bufio.NewReader(c)
	for {
		// A request line and headers up to a blank line, then Content-Length bytes;
		// parsed by hand so that the server's allocations stay out of the figures.
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		put := bytes.HasPrefix(line, []byte("PUT "))
		length := 0
		for {
			h, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(bytes.TrimSpace(h)) == 0 {
				break
			}
			if v, ok := bytes.CutPrefix(bytes.ToLower(h), []byte("content-length:")); ok {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if _, err := r.Discard(length); err != nil {
			return
		}
		resp := getResp
		if put {
			resp = putResp
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

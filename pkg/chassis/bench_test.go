package chassis

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Run with: go test -run '^$' -bench . -benchmem ./pkg/chassis
//
// The middleware benchmarks call ServeHTTP directly (no network), so ns/op is the CPU
// the chassis adds per request. The client benchmarks make real loopback requests to
// an in-process server; cpu-µs/op is the process's user+system CPU per request
// (client and server together), so the difference between the two is the transport's
// overhead.

var benchPayload = []byte("hello\n")

func benchHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(benchPayload)
	})
	return mux
}

func benchServe(b *testing.B, h http.Handler) {
	req := httptest.NewRequest("GET", "/items/42", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// discardWriter is a ResponseWriter that costs (almost) nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func BenchmarkServerBare(b *testing.B) { benchServe(b, benchHandler()) }

func BenchmarkServerMiddleware(b *testing.B) {
	in, _ := newInstance(b, Service{}, "ACCESS_LOG", "false")
	benchServe(b, in.Handler(benchHandler()))
}

func BenchmarkServerMiddlewareAccessLog(b *testing.B) {
	in, _ := newInstance(b, Service{}, "ACCESS_LOG", "true")
	in.log = newLogger(io.Discard, "json", 0, &in.logID).With("service", "test")
	benchServe(b, in.Handler(benchHandler()))
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// upstreamConns counts the connections benchUpstream's server accepted.
var upstreamConns atomic.Int64

func benchClient(b *testing.B, c *http.Client, url string) {
	upstreamConns.Store(0)
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for i := 0; i < 100; i++ { // warm the connection pool and the catalog watch
		get()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		get()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(upstreamConns.Load()), "conns")
}

// benchUpstream serves benchHandler on loopback, registered as service "upstream".
func benchUpstream(b testing.TB) (addr string, caller *Instance) {
	agentAddr := startAgent(b)
	srv := httptest.NewUnstartedServer(benchHandler())
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			upstreamConns.Add(1)
		}
	}
	srv.Start()
	b.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	c := consulClient(b, agentAddr)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "upstream-1", Name: "upstream", Address: host, Port: p}); err != nil {
		b.Fatal(err)
	}
	logs := &logBuffer{}
	in, err := New(Service{Name: "caller", LookupEnv: testEnv(agentAddr), Stdout: logs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(in.Close)
	waitFor(b, 5*time.Second, "upstream in the catalog", func() bool {
		list, _ := in.clientCore().watch.Service(context.Background(), "upstream")
		return len(list) == 1
	})
	return srv.Listener.Addr().String(), in
}

func BenchmarkClientPlain(b *testing.B) {
	addr, _ := benchUpstream(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	benchClient(b, &http.Client{Transport: tr}, "http://"+addr+"/items/1")
}

func BenchmarkClientChassis(b *testing.B) {
	_, in := benchUpstream(b)
	benchClient(b, in.Client(), "http://upstream/items/1")
}

// fakeUpstream answers every request at once, in memory: the client benchmarks below
// measure the transports alone, without a network or a server.
type fakeUpstream struct{}

func (fakeUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func benchInMemory(b *testing.B, c *http.Client, url string) {
	req, _ := http.NewRequest("GET", url, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

func BenchmarkClientPlainInMemory(b *testing.B) {
	benchInMemory(b, &http.Client{Transport: fakeUpstream{}}, "http://127.0.0.1:1/items/1")
}

func BenchmarkClientChassisInMemory(b *testing.B) {
	_, in := benchUpstream(b)
	tr := in.Client().Transport.(*transport)
	c := &http.Client{Transport: &transport{core: tr.core, opts: tr.opts, base: fakeUpstream{}}}
	benchInMemory(b, c, "http://upstream/items/1")
}

package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inflight  prometheus.Gauge
	rejected  prometheus.Counter
	panics    prometheus.Counter
	blocking  prometheus.Gauge
	openConns prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_http_requests_total", Help: "HTTP API requests by endpoint, method and status code.",
		}, []string{"endpoint", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wolke_http_request_duration_seconds", Help: "HTTP API request latency (blocking queries excluded).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wolke_http_requests_in_flight", Help: "HTTP API requests being served, blocking queries included.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wolke_http_connections_rejected_total", Help: "Connections refused with 429 because a client held too many.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wolke_http_panics_total", Help: "Handler panics recovered and answered 500.",
		}),
		blocking: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wolke_http_blocking_queries", Help: "Blocking queries currently waiting.",
		}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wolke_http_open_connections", Help: "Open client connections.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.rejected, m.panics, m.blocking, m.openConns} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// requestIDs are a per-process random prefix and a counter: unique, and far cheaper
// than reading the random source on every request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string { return g.prefix + strconv.FormatUint(g.n.Add(1), 36) }

// statusWriter records the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
	gzip bool // the client accepts gzip-compressed answers
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes streaming flushes through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// middleware is the one chain every request passes: request ID, panic recovery,
// metrics. Connection limits sit below it, in the listener.
func (s *Server) middleware(next http.Handler) http.Handler {
	ids := newRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 {
			id = ids.next()
		}
		w.Header()["X-Request-Id"] = []string{id}
		sw := statusWriters.Get().(*statusWriter)
		sw.ResponseWriter, sw.code, sw.gzip = w, 0, acceptsGzip(r)
		s.metrics.inflight.Inc()
		endpoint := endpointOf(r.URL.Path)
		defer func() {
			s.metrics.inflight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.metrics.panics.Inc()
				s.logger.Error("handler panic", "request_id", id, "method", r.Method, "path", r.URL.Path,
					"panic", p, "stack", string(debug.Stack()))
				if sw.code == 0 {
					writeError(sw, &httpError{code: http.StatusInternalServerError, reason: "internal error (request " + id + ")"})
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(endpoint, r.Method, strconv.Itoa(code)).Inc()
			if !strings.Contains(r.URL.RawQuery, "index=") {
				s.metrics.duration.WithLabelValues(endpoint, r.Method).Observe(time.Since(start).Seconds())
			}
			sw.ResponseWriter = nil
			statusWriters.Put(sw)
		}()
		next.ServeHTTP(sw, r)
	})
}

// endpointOf maps a path to a bounded label (never the key itself).
func endpointOf(p string) string {
	for _, e := range []string{"/v1/kv", "/v1/status", "/v1/agent", "/metrics"} {
		if len(p) >= len(e) && p[:len(e)] == e {
			return e
		}
	}
	return "other"
}

// limitListener refuses connections beyond a per-IP limit with an explicit 429, never
// a silent drop (consul#7527).
type limitListener struct {
	net.Listener
	max     int
	metrics *metrics
	mu      sync.Mutex
	perIP   map[string]int
}

func newLimitListener(ln net.Listener, max int, m *metrics) *limitListener {
	return &limitListener{Listener: ln, max: max, metrics: m, perIP: map[string]int{}}
}

const tooManyConns = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n" +
	"Connection: close\r\nContent-Length: 41\r\n\r\nToo many connections from this client IP\n"

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.perIP[ip] >= l.max {
			l.mu.Unlock()
			l.metrics.rejected.Inc()
			go func() {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte(tooManyConns))
				c.Close()
			}()
			continue
		}
		l.perIP[ip]++
		l.mu.Unlock()
		l.metrics.openConns.Inc()
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

// NetConn returns the connection underneath, for watchHangup.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.perIP[c.ip]--; c.l.perIP[c.ip] <= 0 {
			delete(c.l.perIP, c.ip)
		}
		c.l.mu.Unlock()
		c.l.metrics.openConns.Dec()
	})
	return c.Conn.Close()
}

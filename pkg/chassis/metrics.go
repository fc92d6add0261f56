package chassis

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the chassis's own series, on the instance's registry.
type metrics struct {
	// routes caches the RED series of each route, method and status code, so that a
	// request costs a map read instead of label hashing and validation. The map is
	// copied on write (new keys are rare); routesMu serialises writers.
	routes   atomic.Pointer[map[routeKey]*routeSeries]
	routesMu sync.Mutex

	ready prometheus.Gauge

	// RED of the API, per route (the ServeMux pattern that matched).
	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route, method
	inflight prometheus.Gauge

	// The client, per upstream service.
	clientRequests *prometheus.CounterVec   // service, code ("error" for no response)
	clientDuration *prometheus.HistogramVec // service
	clientRetries  *prometheus.CounterVec   // service
	clientFallback *prometheus.CounterVec   // service
	clientBreaker  *prometheus.GaugeVec     // service: 0 closed, 1 open, 2 half-open
	clientRejected *prometheus.CounterVec   // service, reason (breaker, no_instances)

	dynRejected *prometheus.CounterVec // key
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(reg prometheus.Registerer, name, version string) *metrics {
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "chassis_build_info",
		Help:        "Always 1; the labels name the service and its version.",
		ConstLabels: prometheus.Labels{"service": name, "version": version},
	})
	info.Set(1)
	m := &metrics{
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chassis_ready", Help: "1 while /health/ready answers 200.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_http_requests_total", Help: "API requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chassis_http_request_duration_seconds", Help: "Time to serve an API request, by route pattern and method.",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chassis_http_requests_in_flight", Help: "API requests being served.",
		}),
		clientRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_client_requests_total", Help: "Requests made by the client, by upstream service and final status code (error: no response).",
		}, []string{"service", "code"}),
		clientDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chassis_client_request_duration_seconds", Help: "Time of client requests until the response headers, retries included.",
			Buckets: latencyBuckets,
		}, []string{"service"}),
		clientRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_client_retries_total", Help: "Attempts made after the first, by upstream service.",
		}, []string{"service"}),
		clientFallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_client_fallbacks_total", Help: "Requests answered by the fallback hook.",
		}, []string{"service"}),
		clientBreaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chassis_client_breaker_state", Help: "Circuit breaker per upstream service: 0 closed, 1 open, 2 half-open.",
		}, []string{"service"}),
		clientRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_client_rejected_total", Help: "Requests failed without an attempt, by reason (breaker_open, no_instances).",
		}, []string{"service", "reason"}),
		dynRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chassis_dynamic_config_rejected_total", Help: "Dynamic configuration values rejected (unparsable or invalid), by key.",
		}, []string{"key"}),
	}
	reg.MustRegister(info, m.ready, m.requests, m.duration, m.inflight,
		m.clientRequests, m.clientDuration, m.clientRetries, m.clientFallback, m.clientBreaker, m.clientRejected,
		m.dynRejected)
	return m
}

type routeKey struct {
	route, method string
	code          int
}

type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observe records one served request.
func (m *metrics) observe(route, method string, code int, d time.Duration) {
	k := routeKey{route, method, code}
	var s *routeSeries
	if cur := m.routes.Load(); cur != nil {
		s = (*cur)[k]
	}
	if s == nil {
		s = m.addRoute(k)
	}
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

func (m *metrics) addRoute(k routeKey) *routeSeries {
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	next := map[routeKey]*routeSeries{}
	if cur := m.routes.Load(); cur != nil {
		if s := (*cur)[k]; s != nil {
			return s
		}
		maps.Copy(next, *cur)
	}
	s := &routeSeries{
		requests: m.requests.WithLabelValues(k.route, k.method, codeLabel(k.code)),
		duration: m.duration.WithLabelValues(k.route, k.method),
	}
	next[k] = s
	m.routes.Store(&next)
	return s
}

// codes holds the label values of status codes 0–599, so that labelling allocates
// nothing.
var codeLabels = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

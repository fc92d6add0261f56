package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wolke-platform/wolke/internal/httpcache"
)

// metrics are the gateway's Prometheus series. The request path uses series looked
// up once per route and endpoint (With… costs a label hash and a map lookup, too
// much at tens of thousands of requests per second).
type metrics struct {
	requests   *prometheus.CounterVec   // route, code class
	duration   *prometheus.HistogramVec // route
	upReqs     *prometheus.CounterVec   // service, instance
	upErrs     *prometheus.CounterVec   // service, instance
	upDuration *prometheus.HistogramVec // service, instance
	retries    *prometheus.CounterVec   // service
	ejections  *prometheus.CounterVec   // service
	rejected   *prometheus.CounterVec   // service, cause
	inflight   *prometheus.GaugeVec     // service
	breaker    *prometheus.GaugeVec     // service: 0 closed, 1 open, 2 half-open
	concLimit  *prometheus.GaugeVec     // service: the adaptive concurrency limit
	notFound   prometheus.Counter

	mu      sync.Mutex
	byRoute map[string]*routeMetrics
}

type routeMetrics struct {
	codes    [6]prometheus.Counter // by status class 1xx..5xx, [0] for anything else
	duration prometheus.Observer
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_requests_total", Help: "Requests answered by the gateway, by route and status class.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wolke_proxy_request_duration_seconds", Help: "Time from request to response header, by route.", Buckets: latencyBuckets,
		}, []string{"route"}),
		upReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_upstream_requests_total", Help: "Tries sent to an instance.",
		}, []string{"service", "instance"}),
		upErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_upstream_errors_total", Help: "Tries that failed to connect, broke, timed out or got a 5xx.",
		}, []string{"service", "instance"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wolke_proxy_upstream_duration_seconds", Help: "Time of one try, by instance.", Buckets: latencyBuckets,
		}, []string{"service", "instance"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_retries_total", Help: "Tries beyond the first.",
		}, []string{"service"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_ejections_total", Help: "Instances ejected by outlier detection.",
		}, []string{"service"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_proxy_rejected_total", Help: "Requests the gateway refused itself, by cause.",
		}, []string{"service", "cause"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wolke_proxy_inflight_requests", Help: "Requests being forwarded.",
		}, []string{"service"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wolke_proxy_breaker_state", Help: "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
		}, []string{"service"}),
		concLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wolke_proxy_concurrency_limit", Help: "The adaptive concurrency limit of a service.",
		}, []string{"service"}),
		notFound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wolke_proxy_unrouted_requests_total", Help: "Requests that matched no route.",
		}),
		byRoute: map[string]*routeMetrics{},
	}
	reg.MustRegister(m.requests, m.duration, m.upReqs, m.upErrs, m.upDuration, m.retries, m.ejections,
		m.rejected, m.inflight, m.breaker, m.concLimit, m.notFound)
	return m
}

// routeName labels a route in metrics: service, host and prefix.
func routeName(r *route) string {
	return r.svc.name + ":" + r.spec.Host + r.spec.Prefix
}

func (m *metrics) forRoute(name string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm := m.byRoute[name]; rm != nil {
		return rm
	}
	rm := &routeMetrics{duration: m.duration.WithLabelValues(name)}
	for i := range rm.codes {
		code := "other"
		if i > 0 {
			code = strconv.Itoa(i) + "xx"
		}
		rm.codes[i] = m.requests.WithLabelValues(name, code)
	}
	m.byRoute[name] = rm
	return rm
}

func (m *metrics) endpointMetrics(svc, addr string) (reqs, errs prometheus.Counter, d prometheus.Observer) {
	return m.upReqs.WithLabelValues(svc, addr), m.upErrs.WithLabelValues(svc, addr), m.upDuration.WithLabelValues(svc, addr)
}

// forgetEndpoint drops the series of an instance that left, so a churning service
// does not grow the metrics without bound.
func (m *metrics) forgetEndpoint(svc, addr string) {
	m.upReqs.DeleteLabelValues(svc, addr)
	m.upErrs.DeleteLabelValues(svc, addr)
	m.upDuration.DeleteLabelValues(svc, addr)
}

func (m *metrics) observe(info *reqInfo, d time.Duration) {
	if info.route == nil {
		m.notFound.Inc()
		return
	}
	rm := info.route.metrics
	class := info.status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	rm.codes[class].Inc()
	rm.duration.Observe(d.Seconds())
}

// cacheCollector exports the shared cache's counters when Prometheus scrapes.
type cacheCollector struct {
	c                                                   *httpcache.Cache
	hits, misses, stores, evictions, bytes, objects, co *prometheus.Desc
}

func newCacheCollector(c *httpcache.Cache) *cacheCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &cacheCollector{c: c,
		hits:      d("wolke_proxy_cache_hits_total", "Requests answered from the shared cache."),
		misses:    d("wolke_proxy_cache_misses_total", "Cacheable requests that went upstream."),
		stores:    d("wolke_proxy_cache_stores_total", "Responses stored."),
		evictions: d("wolke_proxy_cache_evictions_total", "Objects evicted to stay within the size bound."),
		bytes:     d("wolke_proxy_cache_bytes", "Bytes held by the cache."),
		objects:   d("wolke_proxy_cache_objects", "Objects held by the cache."),
		co:        d("wolke_proxy_cache_collapsed_total", "Requests answered with another request's response (coalesced misses)."),
	}
}

func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.hits, cc.misses, cc.stores, cc.evictions, cc.bytes, cc.objects, cc.co} {
		ch <- d
	}
}

func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	ch <- prometheus.MustNewConstMetric(cc.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(cc.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(cc.stores, prometheus.CounterValue, float64(s.Stores))
	ch <- prometheus.MustNewConstMetric(cc.evictions, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(cc.bytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(cc.objects, prometheus.GaugeValue, float64(s.Objects))
	ch <- prometheus.MustNewConstMetric(cc.co, prometheus.CounterValue, float64(s.Collapsed))
}

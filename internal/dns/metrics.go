package dns

import (
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	queries          *prometheus.CounterVec
	duration         prometheus.Histogram
	truncated        *prometheus.CounterVec
	recursorFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_dns_queries_total",
			Help: "DNS queries answered, by question type and response code.",
		}, []string{"type", "rcode"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wolke_dns_query_duration_seconds",
			Help:    "Time to answer a DNS query, from the parsed query to the written response (forwarding included).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_dns_truncated_total",
			Help: "DNS responses that left answers out to fit the client's limit, by network (udp, tcp).",
		}, []string{"network"}),
		recursorFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wolke_dns_recursor_failures_total",
			Help: "Forwarded DNS queries that no recursor answered (the client got SERVFAIL).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.queries, m.duration, m.truncated, m.recursorFailures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// typeLabel bounds the type label: question types outside the common ones count as
// "other", so that clients cannot grow the metric without limit.
func typeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeTXT, dns.TypeNS, dns.TypeSOA,
		dns.TypePTR, dns.TypeCNAME, dns.TypeMX, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeAXFR, dns.TypeIXFR:
		return dns.TypeToString[t]
	}
	return "other"
}

func (m *metrics) observe(qtype uint16, rcode int, d time.Duration) {
	t := typeLabel(qtype)
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = "other"
	}
	m.queries.WithLabelValues(t, rc).Inc()
	m.duration.Observe(d.Seconds())
}

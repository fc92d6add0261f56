package membership

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the pool's state as Prometheus metrics, computed at scrape time.
type collector struct {
	pool    *Pool
	members *prometheus.Desc
	dropped *prometheus.Desc
	health  *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(p *Pool) *collector {
	return &collector{
		pool: p,
		members: prometheus.NewDesc("wolke_membership_members",
			"Members this node knows, by status.", []string{"status"}, nil),
		dropped: prometheus.NewDesc("wolke_membership_events_dropped_total",
			"Membership events dropped because the consumer was behind.", nil, nil),
		health: prometheus.NewDesc("wolke_membership_health_score",
			"Lifeguard awareness score of this node (0 is healthy; higher stretches probe timeouts).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.dropped
	ch <- c.health
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counts := map[Status]int{StatusAlive: 0, StatusLeaving: 0, StatusLeft: 0, StatusFailed: 0}
	for _, m := range c.pool.serf.Members() {
		counts[Status(m.Status)]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(n), s.String())
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.pool.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue,
		float64(c.pool.serf.Memberlist().GetHealthScore()))
}

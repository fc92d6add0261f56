package dns

import (
	"github.com/miekg/dns"
)

// forward sends a query for another zone to the recursors in order and relays the
// first usable answer (NOERROR or NXDOMAIN; a truncated one too, so the client retries
// over TCP), over the protocol the client used. When none answers, the client gets
// SERVFAIL. This is Consul's "sequential" recursor strategy.
func (s *Server) forward(cfg *dynamicConfig, network string, req *dns.Msg) *dns.Msg {
	c := &dns.Client{Net: network, Timeout: cfg.RecursorTimeout}
	q := req.Question[0]
	for _, addr := range cfg.recursors {
		r, _, err := c.ExchangeContext(s.ctx, req, addr)
		if r != nil && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			s.logger.Debug("recursor answered with an error", "recursor", addr, "name", q.Name, "rcode", dns.RcodeToString[r.Rcode])
			continue
		}
		if err == nil || r != nil && r.Truncated {
			r.Compress = true
			return r
		}
		s.logger.Warn("recursor failed", "recursor", addr, "name", q.Name, "error", err)
	}
	s.metrics.recursorFailures.Inc()
	m := s.errorReply(req, errRecursors)
	m.RecursionAvailable = true
	return m
}

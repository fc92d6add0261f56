package dns

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/miekg/dns"
)

var _ dns.Handler = (*Server)(nil)

// ServeDNS answers one query. It is the server's dns.Handler, exported so that the
// handler can be driven without sockets (tests, fuzzing, another listener). It never
// panics: a failure inside answers SERVFAIL.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp := s.respond(network, req)
	if err := w.WriteMsg(resp); err != nil {
		s.logger.Debug("writing a DNS response failed", "network", network, "error", err)
	}
	qtype := uint16(0)
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.metrics.observe(qtype, resp.Rcode, time.Since(start))
}

// respond computes the response to req: always a message to send.
func (s *Server) respond(network string, req *dns.Msg) (resp *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("DNS query handler panicked", "panic", p, "stack", string(debug.Stack()))
			resp = s.errorReply(req, fmt.Errorf("panic: %v", p))
		}
	}()
	cfg := s.dyn.Load()
	if req.Opcode != dns.OpcodeQuery {
		return s.errorReply(req, errNotImplemented)
	}
	if len(req.Question) != 1 {
		return s.errorReply(req, errFormat)
	}
	q := req.Question[0]
	name := dns.Fqdn(strings.ToLower(q.Name))
	if !dns.IsSubDomain(s.domain, name) {
		if len(cfg.recursors) == 0 {
			return s.errorReply(req, errNotInZone)
		}
		return s.forward(cfg, network, req)
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = len(cfg.recursors) > 0
	m.Compress = true

	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: only version 0 exists.
		m.SetEdns0(dns.DefaultMsgSize, false)
		m.Rcode = dns.RcodeBadVers
		return m
	}

	ctx := s.ctx
	var err error
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = append(m.Answer, s.soa(cfg))
		m.Ns, m.Extra = s.nameServers(ctx, cfg)
	case dns.TypeNS:
		m.Answer, m.Extra = s.nameServers(ctx, cfg)
		if len(m.Answer) == 0 {
			err = errNoData
		}
	case dns.TypeAXFR, dns.TypeIXFR:
		err = errNotImplemented
	default:
		err = s.lookup(ctx, cfg, q, name, answerCap(cfg, network, req), m)
	}
	m.Rcode = rcodeOf(err)
	switch {
	case m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0:
		m.Ns = append(m.Ns, s.soa(cfg))
	case m.Rcode == dns.RcodeServerFailure:
		s.logger.Warn("DNS lookup failed", "name", q.Name, "type", dns.Type(q.Qtype).String(), "error", err)
	}

	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), false)
	}
	if s.trim(cfg, network, req, m) {
		s.metrics.truncated.WithLabelValues(network).Inc()
		if cfg.EnableTruncate {
			m.Truncated = true
		}
	}
	return m
}

// errorReply is a response without records, with the rcode of err.
func (s *Server) errorReply(req *dns.Msg, err error) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcodeOf(err))
	m.RecursionAvailable = len(s.dyn.Load().recursors) > 0
	return m
}

// lookup answers a name of the zone (lower-cased in name) into m.
// answerCap is how many service answers are worth building: over UDP without EDNS
// (or with a buffer no larger than 512 bytes) one more than the answer limit, which
// tells trim that answers were left out; otherwise all (0). The instances are shuffled
// first, so the answers are the same random few either way.
func answerCap(cfg *dynamicConfig, network string, req *dns.Msg) int {
	if network == "tcp" {
		return 0
	}
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() > dns.MinMsgSize {
		return 0
	}
	return min(cfg.UDPAnswerLimit, maxUDPAnswerLimit) + 1
}

// lookup answers a name of the zone (lower-cased in name) into m, building at most
// limit service answers (0: all).
func (s *Server) lookup(ctx context.Context, cfg *dynamicConfig, q dns.Question, name string, limit int, m *dns.Msg) error {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.domain), ".")
	if rel == "" {
		return errNoData // the apex has SOA and NS only
	}
	labels := dns.SplitDomainName(rel)

	// The kind label nearest the domain wins; in an SRV query, labels from the first
	// one starting with "_" (RFC 2782) are a service lookup without the "service" label.
	kind, parts, suffixes := "", []string(nil), []string(nil)
	for i := len(labels) - 1; i >= 0 && kind == ""; i-- {
		switch labels[i] {
		case "service", "node", "addr", "query", "connect", "virtual", "ingress":
			kind, parts, suffixes = labels[i], labels[:i], labels[i+1:]
		default:
			if q.Qtype == dns.TypeSRV && strings.HasPrefix(labels[i], "_") {
				kind, parts, suffixes = "service", labels[:i+1], labels[i+1:]
			}
		}
	}
	if len(parts) == 0 {
		return errNameNotFound
	}

	switch kind {
	case "service":
		if err := s.checkLocality(suffixes); err != nil {
			return err
		}
		var service, tag string
		if n := len(parts); n == 2 && strings.HasPrefix(parts[0], "_") && strings.HasPrefix(parts[1], "_") {
			// RFC 2782: _name._proto or _name._tag; _tcp is no tag.
			service, tag = parts[0][1:], parts[1][1:]
			if tag == "tcp" {
				tag = ""
			}
		} else {
			// tag[.tag].name: a tag may contain dots.
			service, tag = parts[n-1], strings.Join(parts[:n-1], ".")
		}
		return s.serviceLookup(ctx, cfg, q, service, tag, limit, m)
	case "node":
		if err := s.checkLocality(suffixes); err != nil {
			return err
		}
		// A node name may contain dots.
		return s.nodeLookup(ctx, cfg, q, strings.Join(parts, "."), m)
	case "addr":
		// Like Consul, the datacenter label of an address is not checked.
		if len(parts) != 1 {
			return errNameNotFound
		}
		return s.addrLookup(cfg, q, parts[0], m)
	default: // query, connect, virtual, ingress
		return errNotSupported
	}
}

// checkLocality accepts the labels between the kind and the domain: none, DC, or
// DC.dc. Only the local datacenter exists here: another one is NXDOMAIN, as Consul
// answers for a datacenter it has no path to.
func (s *Server) checkLocality(labels []string) error {
	var dc string
	switch len(labels) {
	case 0:
		return nil
	case 1:
		dc = labels[0]
	case 2, 4, 6:
		for i := 0; i < len(labels); i += 2 {
			switch labels[i+1] {
			case "dc":
				dc = labels[i]
			case "peer", "port", "ns", "ap", "sg":
				return errNotSupported
			default:
				return errNameNotFound
			}
		}
	default:
		return errNameNotFound
	}
	if dc != "" && !strings.EqualFold(dc, s.catalog.Datacenter()) {
		return errNameNotFound
	}
	return nil
}

// usable reports whether an instance of the given health is answered.
func usable(health string, onlyPassing bool) bool {
	if onlyPassing {
		return health == HealthPassing
	}
	return health != HealthCritical
}

func (s *Server) serviceLookup(ctx context.Context, cfg *dynamicConfig, q dns.Question, service, tag string, limit int, m *dns.Msg) error {
	all, err := s.catalog.ServiceInstances(ctx, service, tag)
	if err != nil {
		return fmt.Errorf("%w: service %q: %w", errCatalog, service, err)
	}
	insts := all[:0] // the slice is ours (Catalog's contract)
	for _, in := range all {
		if usable(in.Health, cfg.OnlyPassing) {
			insts = append(insts, in)
		}
	}
	if len(insts) == 0 {
		return errNameNotFound
	}
	// Shuffled for load spreading: clients mostly take the first answer.
	rand.Shuffle(len(insts), func(i, j int) { insts[i], insts[j] = insts[j], insts[i] })
	ttl := seconds(cfg.ServiceTTL)
	if q.Qtype == dns.TypeSRV {
		s.srvRecords(q, insts, ttl, limit, m)
	} else {
		addressRecords(q, insts, ttl, limit, m)
	}
	if len(m.Answer) == 0 {
		return errNoData
	}
	return nil
}

func (s *Server) nodeLookup(ctx context.Context, cfg *dynamicConfig, q dns.Question, node string, m *dns.Msg) error {
	n, ok, err := s.catalog.Node(ctx, node)
	if err != nil {
		return fmt.Errorf("%w: node %q: %w", errCatalog, node, err)
	}
	if !ok {
		return errNameNotFound
	}
	ttl := seconds(cfg.NodeTTL)
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		if ip, err := parseIP(n.Address); err == nil {
			if rr := addrRecord(q.Qtype, q.Name, ip, ttl); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		} else if isHostName(n.Address) {
			m.Answer = append(m.Answer, cname(q.Name, n.Address, ttl))
		}
	}
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, metaTXT(q.Name, n.Meta, ttl)...)
	}
	if len(m.Answer) == 0 {
		return errNoData
	}
	return nil
}

// addrLookup answers HEX.addr: 8 hex digits are an IPv4 address, 32 an IPv6 one.
func (s *Server) addrLookup(cfg *dynamicConfig, q dns.Question, label string, m *dns.Msg) error {
	if len(label) != 2*net.IPv4len && len(label) != 2*net.IPv6len {
		return errNameNotFound
	}
	b, err := hex.DecodeString(label)
	if err != nil {
		return errNameNotFound
	}
	ip, _ := netip.AddrFromSlice(b)
	if rr := addrRecord(q.Qtype, q.Name, ip, seconds(cfg.NodeTTL)); rr != nil {
		m.Answer = append(m.Answer, rr)
		return nil
	}
	return errNoData
}

// soa is the zone's SOA record; its serial is the current time, like Consul's.
func (s *Server) soa(cfg *dynamicConfig) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: cfg.SOA.Minttl},
		Ns:      "ns." + s.domain,
		Mbox:    "hostmaster." + s.domain,
		Serial:  uint32(time.Now().Unix()),
		Refresh: cfg.SOA.Refresh,
		Retry:   cfg.SOA.Retry,
		Expire:  cfg.SOA.Expire,
		Minttl:  cfg.SOA.Minttl,
	}
}

// nameServers returns NS records for up to three random servers (the healthy instances
// of ServerServiceName, on distinct nodes) and their address records, as Consul does.
func (s *Server) nameServers(ctx context.Context, cfg *dynamicConfig) (ns, glue []dns.RR) {
	insts, err := s.catalog.ServiceInstances(ctx, ServerServiceName, "")
	if err != nil {
		s.logger.Warn("listing the servers for NS records failed", "error", err)
		return nil, nil
	}
	rand.Shuffle(len(insts), func(i, j int) { insts[i], insts[j] = insts[j], insts[i] })
	ttl := seconds(cfg.NodeTTL)
	dc := s.catalog.Datacenter()
	seen := make(map[string]bool, 3)
	for _, in := range insts {
		if !usable(in.Health, false) || seen[in.Node] {
			continue
		}
		fqdn := strings.ToLower(in.Node + ".node." + dc + "." + s.domain)
		if !isHostName(fqdn) {
			continue
		}
		seen[in.Node] = true
		ns = append(ns, &dns.NS{Hdr: dns.RR_Header{Name: s.domain, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl}, Ns: fqdn})
		if ip, err := parseIP(in.NodeAddress); err == nil {
			glue = append(glue, addrRecord(dns.TypeANY, fqdn, ip, ttl))
		}
		if len(ns) == 3 {
			break
		}
	}
	return ns, glue
}

// seconds turns a TTL setting into a record TTL.
func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

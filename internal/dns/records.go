package dns

import (
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// parseIP parses an address as the catalog stores it; IPv4-mapped IPv6 addresses are
// IPv4 addresses, and a zone (fe80::1%eth0) is dropped.
func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ip.Unmap().WithZone(""), nil
}

// isHostName reports whether s can be the target of a CNAME or SRV record.
func isHostName(s string) bool {
	if s == "" || strings.HasPrefix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	_, ok := dns.IsDomainName(s)
	return ok
}

// addrRecord returns ip's A or AAAA record if the query type asks for it (A: IPv4,
// AAAA: IPv6; ANY and SRV's additional records: either), else nil.
func addrRecord(qtype uint16, name string, ip netip.Addr, ttl uint32) dns.RR {
	either := qtype == dns.TypeANY || qtype == dns.TypeSRV
	switch {
	case ip.Is4() && (qtype == dns.TypeA || either):
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip.AsSlice()}
	case ip.Is6() && (qtype == dns.TypeAAAA || either):
		return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip.AsSlice()}
	}
	return nil
}

func cname(name, target string, ttl uint32) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: dns.Fqdn(target)}
}

// instanceAddr is the address an instance is reached at, and whether it is the
// service's own (ServiceAddress) rather than the node's. A service address that names
// the queried service itself (Consul allows that as a CNAME) gives way to the node's.
func instanceAddr(in Instance, qname string) (addr string, own bool) {
	if in.ServiceAddress == "" || strings.EqualFold(dns.Fqdn(in.ServiceAddress), qname) {
		return in.NodeAddress, false
	}
	return in.ServiceAddress, true
}

// addressRecords answers an A, AAAA or ANY question (or another type, which gets
// nothing) with the addresses of the instances, each address once. Instances known by
// host name answer a CNAME to the first of them, only when no instance has an IP
// address of the asked family (Consul's behaviour; wolke does not resolve the name).
// At most limit records are built (0: no limit).
func addressRecords(q dns.Question, insts []Instance, ttl uint32, limit int, m *dns.Msg) {
	if q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA && q.Qtype != dns.TypeANY {
		return
	}
	seen := newSet[netip.Addr](len(insts))
	var alias dns.RR
	for _, in := range insts {
		if limit > 0 && len(m.Answer) == limit {
			break
		}
		addr, _ := instanceAddr(in, q.Name)
		ip, err := parseIP(addr)
		if err != nil {
			if alias == nil && isHostName(addr) {
				alias = cname(q.Name, addr, ttl)
			}
			continue
		}
		if seen.has(ip) {
			continue
		}
		if rr := addrRecord(q.Qtype, q.Name, ip, ttl); rr != nil {
			seen.add(ip)
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 && alias != nil {
		m.Answer = append(m.Answer, alias)
	}
}

// srvRecords answers an SRV question, one record per distinct node, address and port,
// with the targets' address records in the additional section. Targets follow Consul:
//
//   - no service address, node address an IP: NODE.node.DC.DOMAIN;
//   - service address an IP: HEX.addr.DC.DOMAIN (the address in hex, which this server
//     also answers), since the node's name would resolve to the node's address;
//   - a host name (service's, else node's): the host name, no additional record.
//
// At most limit records are built (0: no limit).
func (s *Server) srvRecords(q dns.Question, insts []Instance, ttl uint32, limit int, m *dns.Msg) {
	dc := s.catalog.Datacenter()
	type key struct {
		node, addr string
		port       int
	}
	seen := newSet[key](len(insts))
	targets := newSet[string](len(insts))
	for _, in := range insts {
		if limit > 0 && len(m.Answer) == limit {
			break
		}
		addr, own := instanceAddr(in, q.Name)
		k := key{in.Node, addr, in.Port}
		if addr == "" || seen.has(k) {
			continue
		}
		var target string
		var extra dns.RR
		if ip, err := parseIP(addr); err == nil {
			if own {
				target = addrLabel(ip) + ".addr." + dc + "." + s.domain
			} else {
				target = in.Node + ".node." + dc + "." + s.domain
			}
			extra = addrRecord(dns.TypeSRV, target, ip, ttl)
		} else {
			target = dns.Fqdn(addr)
		}
		if !isHostName(target) {
			s.logger.Debug("skipping an instance whose SRV target is not a DNS name", "node", in.Node, "target", target)
			continue
		}
		seen.add(k)
		m.Answer = append(m.Answer, &dns.SRV{
			Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Priority: 1,
			Weight:   clampUint16(weightOf(in)),
			Port:     clampUint16(in.Port),
			Target:   target,
		})
		if extra != nil && !targets.has(target) {
			targets.add(target)
			m.Extra = append(m.Extra, extra)
		}
	}
}

// addrLabel encodes an IP address as the label of an .addr. name: 8 hex digits for
// IPv4, 32 for IPv6.
func addrLabel(ip netip.Addr) string {
	b := ip.AsSlice()
	return hex.EncodeToString(b)
}

// weightOf is the SRV weight of an instance for its health (Consul's findWeight).
func weightOf(in Instance) int {
	w := in.Weights
	if w.Passing == 0 {
		w = Weights{Passing: 1, Warning: 1}
	}
	switch in.Health {
	case HealthPassing:
		return w.Passing
	case HealthWarning:
		return w.Warning
	case HealthCritical:
		return 0
	default:
		return 1
	}
}

func clampUint16(v int) uint16 { return uint16(min(max(v, 0), 0xFFFF)) }

// metaTXT answers node metadata as TXT records, sorted by key: "key=value" encoded as
// RFC 1464 says, or the bare value for keys starting with "rfc1035-" (Consul's rule).
func metaTXT(name string, meta map[string]string, ttl uint32) []dns.RR {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rrs := make([]dns.RR, 0, len(keys))
	for _, k := range keys {
		txt := meta[k]
		if !strings.HasPrefix(strings.ToLower(k), "rfc1035-") {
			txt = rfc1464(k, txt)
		}
		rrs = append(rrs, &dns.TXT{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
			Txt: splitTXT(txt),
		})
	}
	return rrs
}

// rfc1464 encodes a key and value: backquotes, "=" and the key's leading and trailing
// spaces in the key are quoted with a backquote, backquotes in the value too.
func rfc1464(key, value string) string {
	trimmed := strings.TrimLeft(key, " ")
	lead := len(key) - len(trimmed)
	core := strings.TrimRight(trimmed, " ")
	trail := len(trimmed) - len(core)
	core = strings.NewReplacer("`", "``", "=", "`=").Replace(core)
	return strings.Repeat("` ", lead) + core + strings.Repeat("` ", trail) + "=" + strings.ReplaceAll(value, "`", "``")
}

// splitTXT cuts a text into the 255-byte strings a TXT record holds. miekg/dns takes
// the strings in presentation form, so characters it would read as escapes are escaped.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, escapeTXT(s[:255]))
		s = s[255:]
	}
	return append(out, escapeTXT(s))
}

func escapeTXT(s string) string {
	if !strings.ContainsAny(s, `\"`) && isPrintableASCII(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteString(`\` + leftPad3(int(c)))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func leftPad3(v int) string {
	s := strconv.Itoa(v)
	return strings.Repeat("0", 3-len(s)) + s
}

// set is a set that stays a slice while small: most answers hold a few records, and a
// map per query costs more than scanning them.
type set[K comparable] struct {
	small []K
	big   map[K]struct{}
}

const smallSetMax = 32

// newSet returns a set for about n elements.
func newSet[K comparable](n int) *set[K] {
	if n > smallSetMax {
		return &set[K]{big: make(map[K]struct{}, n)}
	}
	return &set[K]{small: make([]K, 0, n)}
}

func (s *set[K]) has(k K) bool {
	if s.big != nil {
		_, ok := s.big[k]
		return ok
	}
	for _, v := range s.small {
		if v == k {
			return true
		}
	}
	return false
}

func (s *set[K]) add(k K) {
	if s.big == nil && len(s.small) < smallSetMax {
		s.small = append(s.small, k)
		return
	}
	if s.big == nil {
		s.big = make(map[K]struct{}, 2*smallSetMax)
		for _, v := range s.small {
			s.big[v] = struct{}{}
		}
		s.small = nil
	}
	s.big[k] = struct{}{}
}

package dns

import (
	"math"
	"strings"

	"github.com/miekg/dns"
)

// maxUDPDatagramSize caps an EDNS buffer size: larger UDP payloads do not fit an IP
// packet (Consul's limit, 65535 minus IP and UDP headers).
const maxUDPDatagramSize = math.MaxUint16 - 68

// trim cuts the answers of m (and the additional records of the answers it drops)
// until the message fits what the client can take, and reports whether it dropped
// any. Over UDP that is 512 bytes, or the EDNS buffer size the query gave; without
// EDNS the answers are also capped at UDPAnswerLimit and the size is computed without
// name compression, so the answer fits even a client that does not decompress (the
// message is still sent compressed). Over TCP the limit is a DNS message's 65535 bytes.
// The authority section goes first; at least one answer is always kept.
func (s *Server) trim(cfg *dynamicConfig, network string, req, m *dns.Msg) bool {
	n := len(m.Answer)
	maxSize := dns.MaxMsgSize
	if network != "tcp" {
		maxSize = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			maxSize = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPDatagramSize)
		}
	}
	compress := m.Compress
	defer func() { m.Compress = compress }()

	// Additional records that belong to an answer (SRV and NS targets), by lower-case
	// name, indexed at the first cut; the rest (EDNS OPT) always stays.
	var extra map[string][]dns.RR
	var keep []dns.RR
	answers := m.Answer
	cut := func(k int) {
		m.Answer = answers[:k]
		if len(m.Extra) == 0 && extra == nil {
			return
		}
		if extra == nil {
			extra = make(map[string][]dns.RR, len(m.Extra))
			for _, rr := range m.Extra {
				if rr.Header().Rrtype == dns.TypeOPT {
					keep = append(keep, rr)
					continue
				}
				name := strings.ToLower(rr.Header().Name)
				extra[name] = append(extra[name], rr)
			}
		}
		m.Extra = syncExtra(m.Answer, extra, keep)
	}

	if network != "tcp" && maxSize == dns.MinMsgSize {
		m.Compress = false
		if limit := min(cfg.UDPAnswerLimit, maxUDPAnswerLimit); len(answers) > limit {
			cut(limit)
		}
	}
	if fits(m, maxSize) {
		return len(m.Answer) < n
	}
	if len(m.Answer) > 1 {
		m.Ns = nil
	}
	if len(m.Answer) > 1 && m.Len() > maxSize {
		// The largest prefix of the answers that fits, at least one.
		lo, hi := 1, len(m.Answer)-1 // lo fits or is the minimum; hi+1 does not fit
		for lo < hi {
			mid := (lo + hi + 1) / 2
			cut(mid)
			if m.Len() <= maxSize {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		cut(lo)
	}
	return len(m.Answer) < n
}

// fits reports whether m packs into maxSize bytes; the size without compression,
// cheaper to compute, settles most answers.
func fits(m *dns.Msg, maxSize int) bool {
	if !m.Compress {
		return m.Len() <= maxSize
	}
	m.Compress = false
	n := m.Len()
	m.Compress = true
	return n <= maxSize || m.Len() <= maxSize
}

// syncExtra returns the additional records for the SRV and NS targets among answers (each
// name once), followed by keep.
func syncExtra(answers []dns.RR, extra map[string][]dns.RR, keep []dns.RR) []dns.RR {
	out := make([]dns.RR, 0, len(answers)+len(keep))
	done := newSet[string](len(answers))
	for _, rr := range answers {
		var t string
		switch rr := rr.(type) {
		case *dns.SRV:
			t = strings.ToLower(rr.Target)
		case *dns.NS:
			t = strings.ToLower(rr.Ns)
		default:
			continue
		}
		if done.has(t) {
			continue
		}
		done.add(t)
		out = append(out, extra[t]...)
	}
	return append(out, keep...)
}

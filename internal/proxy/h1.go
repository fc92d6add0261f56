package proxy

import (
	"bytes"
	"errors"
)

// This file holds the HTTP/1.1 message heads of the event-loop engine (loop_linux.go):
// a parser that recognizes the plain requests the engine forwards itself and turns
// every other request over to fasthttp, a response-head parser, the serializers of
// what goes upstream and back, and a scanner that finds the end of a chunked body
// being relayed. Their slices point into the connections' read buffers; nothing is
// copied until the head is written out.

// h1Status is what a parser made of a buffer.
type h1Status uint8

const (
	h1More  h1Status = iota // the head is not complete yet
	h1OK                    // parsed; n bytes are the head
	h1Other                 // a request the engine does not forward itself (fasthttp's to answer), or a malformed response
)

const (
	maxHeadFields = 64
	// maxContentLength bounds the Content-Length values taken as numbers.
	maxContentLength = 1 << 40
)

type h1Field struct{ name, value []byte }

// reqHead is a parsed request head. The engine forwards only requests that every
// proxy reads alike: HTTP/1.1, origin-form target with a path that needs no
// normalizing, one Host, at most one Content-Length, no Transfer-Encoding, no
// Expect, no Upgrade, no Connection tokens but close and keep-alive.
type reqHead struct {
	method, uri, path, host []byte
	contentLength           int
	close                   bool
	fields                  []h1Field
	arr                     [maxHeadFields]h1Field
}

// respHead is a parsed response head.
type respHead struct {
	status        int
	reason        []byte
	contentLength int64 // -1: none
	chunked       bool
	close         bool // the upstream closes the connection after this response
	connNames     bool // a Connection field names other fields, which stay on this hop
	fields        []h1Field
	arr           [maxHeadFields]h1Field
}

var errBadResponse = errors.New("malformed response from upstream")

// nextLine returns the line at buf[i:] without its end (CRLF, or a bare LF, which
// RFC 9112 §2.2 lets a recipient accept) and the index after it; ok is false when
// no whole line is buffered yet.
func nextLine(buf []byte, i int) (line []byte, next int, ok bool) {
	j := bytes.IndexByte(buf[i:], '\n')
	if j < 0 {
		return nil, 0, false
	}
	line = buf[i : i+j]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, i + j + 1, true
}

// nextField parses the field line at buf[i:] of a head that has n fields so far.
// A nil name with h1OK is the empty line that ends the head; next is the index
// after the line.
func nextField(buf []byte, i, n int) (name, value []byte, next int, st h1Status) {
	line, next, ok := nextLine(buf, i)
	if !ok {
		return nil, nil, 0, h1More
	}
	if len(line) == 0 {
		return nil, nil, next, h1OK
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || n == maxHeadFields {
		return nil, nil, 0, h1Other
	}
	name, value = line[:colon], trimOWS(line[colon+1:])
	if !isToken(name) || !validValue(value) {
		return nil, nil, 0, h1Other
	}
	return name, value, next, h1OK
}

// tchar reports the characters of an RFC 9110 token.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// pathChar reports the bytes a path may hold to be forwarded as it is: anything
// fasthttp would decode or normalize ('%', '\\') sends the request to fasthttp,
// so that both engines route it by the same path.
var pathChar = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	t['%'], t['\\'], t['#'], t['?'] = false, false, false, false
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// validValue accepts field-value bytes: visible ASCII, space, tab and obs-text.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// eqFold compares an ASCII header name with a lower-case one.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// simplePath reports whether a path is routed and forwarded unchanged by fasthttp:
// no escapes, no empty or dot segments.
func simplePath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i, c := range p {
		if !pathChar[c] {
			return false
		}
		if c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
			return false
		}
	}
	return true
}

// parseDigits parses a Content-Length value.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 13 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= maxContentLength
}

// parseRequestHead parses the request head at the start of buf.
func parseRequestHead(buf []byte, h *reqHead) (int, h1Status) {
	line, i, ok := nextLine(buf, 0)
	if !ok {
		return 0, h1More
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return 0, h1Other
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return 0, h1Other
	}
	sp2 += sp1 + 1
	h.method, h.uri = line[:sp1], line[sp1+1:sp2]
	if !isToken(h.method) || string(line[sp2+1:]) != "HTTP/1.1" {
		return 0, h1Other
	}
	h.path = h.uri
	if q := bytes.IndexByte(h.uri, '?'); q >= 0 {
		h.path = h.uri[:q]
		for _, c := range h.uri[q+1:] {
			if c <= 0x20 || c >= 0x7f || c == '#' {
				return 0, h1Other
			}
		}
	}
	if !simplePath(h.path) {
		return 0, h1Other
	}
	h.fields, h.host, h.contentLength, h.close = h.arr[:0], nil, 0, false
	hosts, lengths := 0, 0
	for {
		name, value, next, st := nextField(buf, i, len(h.fields))
		if st != h1OK {
			return 0, st
		}
		if i = next; name == nil {
			break
		}
		switch {
		case eqFold(name, "host"):
			hosts++
			h.host = value
		case eqFold(name, "content-length"):
			n, ok := parseDigits(value)
			lengths++
			if !ok {
				return 0, h1Other
			}
			h.contentLength = int(n)
		case eqFold(name, "transfer-encoding"), eqFold(name, "expect"), eqFold(name, "upgrade"):
			return 0, h1Other
		case eqFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				switch tok = trimOWS(tok); {
				case eqFold(tok, "close"):
					h.close = true
				case eqFold(tok, "keep-alive"), len(tok) == 0:
				default:
					return 0, h1Other // names another hop-by-hop header
				}
			}
		}
		h.fields = append(h.fields, h1Field{name, value})
	}
	if hosts != 1 || lengths > 1 || len(h.host) == 0 {
		return 0, h1Other
	}
	return i, h1OK
}

// parseResponseHead parses the response head at the start of buf; h1Other means a
// response no proxy should pass on.
func parseResponseHead(buf []byte, h *respHead) (int, h1Status) {
	line, i, ok := nextLine(buf, 0)
	if !ok {
		return 0, h1More
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '1' && line[7] != '0') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, h1Other
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, h1Other
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, h1Other
	}
	h.status, h.reason = code, nil
	if len(line) > 13 {
		h.reason = line[13:]
		if !validValue(h.reason) {
			return 0, h1Other
		}
	}
	http10, keepAlive := line[7] == '0', false
	h.fields, h.contentLength, h.chunked, h.close = h.arr[:0], -1, false, false
	for {
		name, value, next, st := nextField(buf, i, len(h.fields))
		if st != h1OK {
			return 0, st
		}
		if i = next; name == nil {
			break
		}
		switch {
		case eqFold(name, "content-length"):
			n, ok := parseDigits(value)
			// Repeated fields are passed on as they are, so they must be the same
			// bytes: "5" with "05" is refused downstream (net/http does).
			if !ok || (h.contentLength >= 0 && !bytes.Equal(value, field(h.fields, "content-length"))) {
				return 0, h1Other
			}
			h.contentLength = n
		case eqFold(name, "transfer-encoding"):
			// RFC 9112 §6.1: in HTTP/1.0 the field makes the framing faulty (net/http
			// ignores it and reads to the close).
			if http10 || !eqFold(value, "chunked") || h.chunked {
				return 0, h1Other // any other coding cannot be framed
			}
			h.chunked = true
		case eqFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				switch tok = trimOWS(tok); {
				case eqFold(tok, "close"):
					h.close = true
				case eqFold(tok, "keep-alive"):
					keepAlive = true
				case len(tok) > 0:
					h.connNames = true
				}
			}
		}
		h.fields = append(h.fields, h1Field{name, value})
	}
	if http10 && !keepAlive {
		h.close = true // RFC 9112 §9.3; close wins over keep-alive in any order
	}
	if h.chunked {
		h.contentLength = -1 // RFC 9112 §6.3: chunked wins; the length is dropped
	}
	return i, h1OK
}

// hasBody reports whether a response to a request with this method carries a body.
func (h *respHead) hasBody(head bool) bool {
	return !head && h.status >= 200 && h.status != 204 && h.status != 304
}

// hopField reports hop-by-hop fields (RFC 9110 §7.6.1), never forwarded.
func hopField(name []byte) bool {
	switch len(name) {
	case 2:
		return eqFold(name, "te")
	case 7:
		return eqFold(name, "trailer") || eqFold(name, "upgrade")
	case 10:
		return eqFold(name, "connection") || eqFold(name, "keep-alive")
	case 16:
		return eqFold(name, "proxy-connection")
	case 18:
		return eqFold(name, "proxy-authenticate")
	case 19:
		return eqFold(name, "proxy-authorization")
	}
	return false
}

// namedByConnection reports whether a Connection field among fields names name as
// one more hop-by-hop field (RFC 9110 §7.6.1).
func namedByConnection(fields []h1Field, name []byte) bool {
	for _, f := range fields {
		if eqFold(f.name, "connection") && hasToken(f.value, name) {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v holds tok, in any case.
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		if bytes.EqualFold(trimOWS(v[:i]), tok) {
			return true
		}
		v = v[min(i+1, len(v)):]
	}
	return false
}

// identityField reports what could pass for the identity header the gateway sets
// for authenticated clients (any case, '_' for '-'); see authn.StripIdentity.
func identityField(name []byte) bool {
	const norm = "x-wolke-identity"
	if len(name) != len(norm) {
		return false
	}
	for i, c := range name {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

// field returns the first value of a field, "" if absent.
func field(fields []h1Field, lower string) []byte {
	for _, f := range fields {
		if eqFold(f.name, lower) {
			return f.value
		}
	}
	return nil
}

// fieldBytes returns the first value of the field named name (any case).
func fieldBytes(fields []h1Field, name []byte) []byte {
	for _, f := range fields {
		if bytes.EqualFold(f.name, name) {
			return f.value
		}
	}
	return nil
}

// upstreamRequest is what the gateway adds to a forwarded request.
type upstreamRequest struct {
	path        []byte // the target's path after stripping the route's prefix
	reqID, tp   []byte
	ip          []byte
	proto       string // http or https
	stripPrefix int    // bytes of the client's path the route strips
}

// appendUpstreamRequest serializes the request head that goes upstream: the
// client's fields without hop-by-hop and identity fields, and the gateway's
// X-Request-Id, Traceparent and forwarding fields (the client's X-Forwarded-For and
// Forwarded are extended, as the fasthttp path does).
func appendUpstreamRequest(b []byte, h *reqHead, u *upstreamRequest) []byte {
	b = append(b, h.method...)
	b = append(b, ' ')
	path := h.path[u.stripPrefix:]
	if len(path) == 0 || path[0] != '/' {
		b = append(b, '/')
	}
	b = append(b, path...)
	b = append(b, h.uri[len(h.path):]...) // the query, with its '?'
	b = append(b, " HTTP/1.1\r\n"...)
	var xff, fwd [][]byte
	var one [2][]byte // room for one prior value of each without allocating
	xff, fwd = one[:0:1], one[1:1:2]
	for _, f := range h.fields {
		n := f.name
		switch {
		case hopField(n), identityField(n), eqFold(n, "x-request-id"), eqFold(n, "traceparent"),
			eqFold(n, "x-forwarded-proto"), eqFold(n, "x-forwarded-host"):
			continue
		case eqFold(n, "x-forwarded-for"):
			if len(f.value) > 0 { // an empty one would add an empty list element (", ip")
				xff = append(xff, f.value)
			}
			continue
		case eqFold(n, "forwarded"):
			if len(f.value) > 0 {
				fwd = append(fwd, f.value)
			}
			continue
		}
		b = append(b, n...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Request-Id: "...)
	b = append(b, u.reqID...)
	b = append(b, "\r\nTraceparent: "...)
	b = append(b, u.tp...)
	b = append(b, "\r\nX-Forwarded-For: "...)
	for _, v := range xff {
		b = append(append(b, v...), ", "...)
	}
	b = append(b, u.ip...)
	b = append(b, "\r\nX-Forwarded-Proto: "...)
	b = append(b, u.proto...)
	b = append(b, "\r\nX-Forwarded-Host: "...)
	b = append(b, h.host...)
	b = append(b, "\r\nForwarded: "...)
	for _, v := range fwd {
		b = append(append(b, v...), ", "...)
	}
	b = append(b, "for="...)
	if bytes.IndexByte(u.ip, ':') >= 0 {
		b = append(append(append(b, "\"["...), u.ip...), "]\""...)
	} else {
		b = append(b, u.ip...)
	}
	b = append(b, ";host="...)
	b = appendQuoted(b, h.host)
	b = append(append(b, ";proto="...), u.proto...)
	return append(b, "\r\n\r\n"...)
}

// appendClientResponse serializes the response head that goes to the client: the
// upstream's status and fields without hop-by-hop ones, the request's ID, and
// extra, whole header lines of the gateway's own.
func appendClientResponse(b []byte, h *respHead, reqID []byte, close bool, extra []byte) []byte {
	b = appendStatusLine(b, h.status, h.reason)
	for _, f := range h.fields {
		// RFC 9112 §6.3: a message forwarded as chunked must lose its Content-Length.
		if hopField(f.name) || eqFold(f.name, "x-request-id") || h.chunked && eqFold(f.name, "content-length") ||
			h.connNames && namedByConnection(h.fields, f.name) {
			continue
		}
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, extra...)
	b = append(b, "X-Request-Id: "...)
	b = append(b, reqID...)
	if close {
		b = append(b, "\r\nConnection: close"...)
	}
	return append(b, "\r\n\r\n"...)
}

func appendStatusLine(b []byte, status int, reason []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10), ' ')
	b = append(b, reason...)
	return append(b, "\r\n"...)
}

// chunkScanner follows a chunked body as it is relayed, to find where it ends.
type chunkScanner struct {
	state uint8
	size  int64 // bytes of chunk data left, in chunkData
	n     int   // bytes in the current size or trailer line, bounded
}

const (
	chunkSize    = iota // reading the hex size
	chunkExt            // after the size: extensions up to LF
	chunkData           // size bytes of data
	chunkDataCR         // CR after data
	chunkDataLF         // LF after data
	chunkTrailer        // at the start of a trailer line (after the last chunk)
	chunkTrailerLine
	chunkDone
)

// scan consumes b and reports how many bytes belong to the body and whether it
// ended there; an error means the body is malformed.
func (s *chunkScanner) scan(b []byte) (int, bool, error) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch s.state {
		case chunkSize:
			switch {
			case '0' <= c && c <= '9':
				s.size = s.size<<4 | int64(c-'0')
			case 'a' <= c && c <= 'f':
				s.size = s.size<<4 | int64(c-'a'+10)
			case 'A' <= c && c <= 'F':
				s.size = s.size<<4 | int64(c-'A'+10)
			case c == ';' || c == ' ' || c == '\t' || c == '\r':
				if s.n == 0 {
					return 0, false, errBadResponse
				}
				s.state = chunkExt
				continue
			case c == '\n':
				if s.n == 0 {
					return 0, false, errBadResponse
				}
				s.endSize()
				continue
			default:
				return 0, false, errBadResponse
			}
			if s.n++; s.n > 15 {
				return 0, false, errBadResponse
			}
		case chunkExt:
			if c == '\n' {
				s.endSize()
			} else if s.n++; s.n > 4096 {
				return 0, false, errBadResponse
			}
		case chunkData:
			take := min(int64(len(b)-i), s.size)
			s.size -= take
			i += int(take) - 1
			if s.size == 0 {
				s.state = chunkDataCR
			}
		case chunkDataCR:
			switch c {
			case '\r':
				s.state = chunkDataLF
			case '\n':
				s.state, s.size, s.n = chunkSize, 0, 0
			default:
				return 0, false, errBadResponse
			}
		case chunkDataLF:
			if c != '\n' {
				return 0, false, errBadResponse
			}
			s.state, s.size, s.n = chunkSize, 0, 0
		case chunkTrailer:
			switch c {
			case '\r':
			case '\n':
				s.state = chunkDone
				return i + 1, true, nil
			default:
				s.state, s.n = chunkTrailerLine, 1
			}
		case chunkTrailerLine:
			if c == '\n' {
				s.state = chunkTrailer
			} else if s.n++; s.n > 8192 {
				return 0, false, errBadResponse
			}
		case chunkDone:
			return i, true, nil
		}
	}
	return len(b), s.state == chunkDone, nil
}

func (s *chunkScanner) endSize() {
	s.n = 0
	if s.size == 0 {
		s.state = chunkTrailer
		return
	}
	s.state = chunkData
}

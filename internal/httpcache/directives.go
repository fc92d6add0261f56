package httpcache

import (
	"bytes"
	"net/textproto"
	"slices"
)

// absent marks a delta-seconds directive that was not given.
const absent = -1

// maxDelta is the largest delta-seconds value kept: RFC 9111 §1.2.2 says a cache
// treats anything larger as 2^31.
const maxDelta = 1 << 31

// directives are the Cache-Control directives the cache acts on (RFC 9111 §5.2,
// and stale-while-revalidate and stale-if-error from RFC 5861). Durations are in
// seconds, absent when not given. The first occurrence of a repeated directive wins.
type directives struct {
	maxAge, sMaxAge, maxStale, minFresh int64
	staleWhileRevalidate, staleIfError  int64

	noStore, noCache, private, public bool
	mustRevalidate, proxyRevalidate   bool
	onlyIfCached                      bool

	// noCacheFields and privateFields are the field names of the qualified forms
	// no-cache="..." and private="...": a shared cache may store the response
	// without those fields (RFC 9111 §5.2.2.4, §5.2.2.7).
	noCacheFields, privateFields []string
}

func newDirectives() directives {
	return directives{
		maxAge: absent, sMaxAge: absent, maxStale: absent, minFresh: absent,
		staleWhileRevalidate: absent, staleIfError: absent,
	}
}

// parse adds the directives of one Cache-Control field line. qualified tells
// whether the field-name lists of no-cache and private are kept (responses) or
// the directives are taken as unqualified (requests, where they have no lists).
func (d *directives) parse(v []byte, qualified bool) {
	for len(v) > 0 {
		var item []byte
		item, v = nextItem(v)
		name, arg, hasArg := bytes.Cut(item, []byte{'='})
		name = trimOWS(name)
		arg = trimOWS(arg)
		if len(name) == 0 {
			continue
		}
		switch {
		case eqFold(name, "max-age"):
			setDelta(&d.maxAge, arg)
		case eqFold(name, "s-maxage"):
			setDelta(&d.sMaxAge, arg)
		case eqFold(name, "max-stale"):
			if !hasArg {
				if d.maxStale == absent {
					d.maxStale = maxDelta
				}
				break
			}
			setDelta(&d.maxStale, arg)
		case eqFold(name, "min-fresh"):
			setDelta(&d.minFresh, arg)
		case eqFold(name, "stale-while-revalidate"):
			setDelta(&d.staleWhileRevalidate, arg)
		case eqFold(name, "stale-if-error"):
			setDelta(&d.staleIfError, arg)
		case eqFold(name, "no-store"):
			d.noStore = true
		case eqFold(name, "no-cache"):
			if qualified && hasArg && len(unquote(arg)) > 0 {
				d.noCacheFields = appendFieldNames(d.noCacheFields, unquote(arg))
			} else {
				d.noCache = true
			}
		case eqFold(name, "private"):
			if qualified && hasArg && len(unquote(arg)) > 0 {
				d.privateFields = appendFieldNames(d.privateFields, unquote(arg))
			} else {
				d.private = true
			}
		case eqFold(name, "public"):
			d.public = true
		case eqFold(name, "must-revalidate"):
			d.mustRevalidate = true
		case eqFold(name, "proxy-revalidate"):
			d.proxyRevalidate = true
		case eqFold(name, "only-if-cached"):
			d.onlyIfCached = true
		}
	}
}

// nextItem splits the first comma-separated list element off v, honouring
// quoted strings (a quoted field-name list may itself contain commas).
func nextItem(v []byte) (item, rest []byte) {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted:
			i++
		case c == ',' && !quoted:
			return v[:i], v[i+1:]
		}
	}
	return v, nil
}

// setDelta sets *dst from a delta-seconds argument unless already set. An
// invalid argument counts as 0, which makes a response stale rather than
// fresher than intended (RFC 9111 §4.2.1).
func setDelta(dst *int64, arg []byte) {
	if *dst != absent {
		return
	}
	*dst = parseDelta(unquote(arg))
}

// parseDelta parses delta-seconds, 0 when invalid, capped at maxDelta.
func parseDelta(b []byte) int64 {
	if len(b) == 0 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
		if n >= maxDelta {
			return maxDelta
		}
	}
	return n
}

func unquote(b []byte) []byte {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return b[1 : len(b)-1]
	}
	return b
}

// appendFieldNames appends the canonical field names of a comma-separated list.
func appendFieldNames(dst []string, list []byte) []string {
	for len(list) > 0 {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte{','})
		if name = trimOWS(name); len(name) > 0 {
			dst = append(dst, textproto.CanonicalMIMEHeaderKey(string(name)))
		}
	}
	return dst
}

// parseVary returns the canonical field names a Vary value lists, and whether it
// holds "*" (the response varies on something outside the request).
func parseVary(dst []string, v []byte) ([]string, bool) {
	for len(v) > 0 {
		var name []byte
		name, v, _ = bytes.Cut(v, []byte{','})
		name = trimOWS(name)
		switch {
		case len(name) == 0:
		case len(name) == 1 && name[0] == '*':
			return dst, true
		default:
			if c := textproto.CanonicalMIMEHeaderKey(string(name)); !slices.Contains(dst, c) {
				dst = append(dst, c)
			}
		}
	}
	return dst, false
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

// eqFold reports whether b equals the lower-case ASCII s, ignoring case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok (lower case),
// ignoring case: for Pragma: no-cache.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte{','})
		if eqFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
}

package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"
)

// validRequestID accepts a caller's X-Request-ID if it is short printable ASCII, so a
// client cannot smuggle line breaks or megabytes into every log line downstream.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID appends 32 random hex digits. math/rand/v2's top-level generator is
// per-thread and lock-free; request IDs need uniqueness, not secrecy.
func newRequestID(dst []byte) []byte {
	return appendRandHex(appendRandHex(dst, 8), 8)
}

func appendRandHex(dst []byte, n int) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.AppendEncode(dst, b[:n])
}

// traceparent returns the W3C trace context to send upstream: the caller's trace ID
// with a new span ID for this hop, or a new sampled trace when the caller sent none
// or a malformed one (https://www.w3.org/TR/trace-context/#traceparent-header).
func traceparent(in, dst []byte) []byte {
	if validTraceparent(in) {
		dst = append(dst, in[:36]...) // "00-" + trace ID + "-"
		dst = appendRandHex(dst, 8)
		return append(dst, in[52:55]...) // "-" + flags
	}
	dst = append(dst, "00-"...)
	dst = appendRandHex(appendRandHex(dst, 8), 8)
	dst = append(dst, '-')
	dst = appendRandHex(dst, 8)
	return append(dst, "-01"...)
}

func validTraceparent(v []byte) bool {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') {
		return false
	}
	// Version ff is forbidden; an all-zero trace or span ID is invalid.
	if (v[0] == 'f' && v[1] == 'f') || !isHex(v[0:2]) || !isHex(v[3:35]) || !isHex(v[36:52]) || !isHex(v[53:55]) {
		return false
	}
	return !allZero(v[3:35]) && !allZero(v[36:52])
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

// appendIP appends ip in its usual text form without allocating.
func appendIP(dst []byte, ip net.IP) []byte {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return append(dst, "unknown"...)
	}
	return a.Unmap().AppendTo(dst)
}

package dns

import (
	"errors"

	"github.com/miekg/dns"
)

// Errors of a lookup; rcodeOf turns them into the response code, in one place.
var (
	// errNameNotFound: the name does not exist (NXDOMAIN, SOA in the authority section).
	// A service without a healthy instance is such a name, as in Consul.
	errNameNotFound = errors.New("dns: name not found")
	// errNoData: the name exists but has no record of the asked type (RFC 2308 NODATA:
	// NOERROR with an empty answer and the SOA in the authority section).
	errNoData = errors.New("dns: no record of that type")
	// errNotSupported: a Consul query kind wolke does not serve yet (.query., .connect.,
	// .virtual., .ingress., peers).
	errNotSupported = errors.New("dns: query kind not supported")
	// errNotImplemented: zone transfers and opcodes other than QUERY.
	errNotImplemented = errors.New("dns: not implemented")
	// errFormat: a request without exactly one question.
	errFormat = errors.New("dns: malformed request")
	// errNotInZone: a name outside the domain and no recursor to forward it to.
	errNotInZone = errors.New("dns: name outside the zone and no recursor configured")
	// errCatalog wraps a failure to read the catalog.
	errCatalog = errors.New("dns: catalog read failed")
	// errRecursors: every recursor failed.
	errRecursors = errors.New("dns: every recursor failed")
)

// rcodes maps each lookup error to its DNS response code; anything else is SERVFAIL.
var rcodes = []struct {
	err   error
	rcode int
}{
	{errNameNotFound, dns.RcodeNameError},
	{errNoData, dns.RcodeSuccess},
	{errNotSupported, dns.RcodeRefused},
	{errNotInZone, dns.RcodeRefused},
	{errNotImplemented, dns.RcodeNotImplemented},
	{errFormat, dns.RcodeFormatError},
}

// rcodeOf returns the response code for the error of a lookup (nil: NOERROR).
func rcodeOf(err error) int {
	if err == nil {
		return dns.RcodeSuccess
	}
	for _, e := range rcodes {
		if errors.Is(err, e.err) {
			return e.rcode
		}
	}
	return dns.RcodeServerFailure
}

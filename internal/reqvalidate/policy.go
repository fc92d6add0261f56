package reqvalidate

import (
	"errors"
	"fmt"
	"strings"
)

// Policy is the request validation part of a route's policy document. Every
// field is optional; the zero Policy accepts everything.
type Policy struct {
	// MaxBodyBytes is the largest request body accepted, by Content-Length before
	// it is read and by size for a chunked body (413). 0: no limit of its own
	// (the server's MaxRequestBodySize applies).
	MaxBodyBytes int `json:"max_body_bytes,omitempty"`
	// MaxURILength is the longest request target accepted, path and query as
	// sent (414). 0: no limit (fasthttp's read buffer still bounds it).
	MaxURILength int `json:"max_uri_length,omitempty"`
	// MaxHeaderBytes bounds the header block as received, CRLFs included and the
	// request line excluded (431). 0: no limit of its own.
	MaxHeaderBytes int `json:"max_header_bytes,omitempty"`
	// MaxHeaders bounds the number of header fields (431). 0: no limit.
	MaxHeaders int `json:"max_headers,omitempty"`
	// Methods are the request methods accepted, case-sensitive; any other gets a
	// 405 with an Allow header. GET allows HEAD. Empty: any method.
	Methods []string `json:"methods,omitempty"`
	// ContentTypes are the media types accepted for requests with a body
	// ("application/json", "text/*"; parameters such as charset are ignored);
	// any other, or none, gets a 415. Setting it also makes a POST, PUT or
	// PATCH without Content-Length or chunked framing a 411. Empty: any.
	ContentTypes []string `json:"content_types,omitempty"`
	// OpenAPI is the KV key of the service's OpenAPI 3 document (JSON or YAML),
	// e.g. "wolke/gateway/openapi/<service>". The gateway reads it and passes
	// its bytes to New. Empty: no OpenAPI validation.
	OpenAPI string `json:"openapi,omitempty"`
}

// Validate reports everything wrong with p, one line per problem, each starting
// with the JSON name of the field.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, l := range []struct {
		name string
		v    int
	}{
		{"max_body_bytes", p.MaxBodyBytes}, {"max_uri_length", p.MaxURILength},
		{"max_header_bytes", p.MaxHeaderBytes}, {"max_headers", p.MaxHeaders},
	} {
		if l.v < 0 {
			bad("%s: must not be negative, got %d", l.name, l.v)
		}
	}
	seen := map[string]bool{}
	for _, m := range p.Methods {
		switch {
		case !isToken(m):
			bad("methods: %q is not a method name", m)
		case strings.ToUpper(m) != m:
			bad("methods: %q: methods are case-sensitive, did you mean %q?", m, strings.ToUpper(m))
		case seen[m]:
			bad("methods: %q is listed twice", m)
		}
		seen[m] = true
	}
	clear(seen)
	for _, ct := range p.ContentTypes {
		typ, sub, ok := strings.Cut(ct, "/")
		switch {
		case !ok || !isToken(typ) || !isToken(sub) || (typ == "*" && sub != "*"):
			bad("content_types: %q is not a media type like application/json or text/*", ct)
		case seen[strings.ToLower(ct)]:
			bad("content_types: %q is listed twice", ct)
		}
		seen[strings.ToLower(ct)] = true
	}
	if k := p.OpenAPI; k != "" {
		switch {
		case strings.HasPrefix(k, "/") || strings.HasSuffix(k, "/"):
			bad("openapi: KV key %q must not start or end with /", k)
		case strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			bad("openapi: KV key %q must not contain spaces or control characters", k)
		}
	}
	return errors.Join(errs...)
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

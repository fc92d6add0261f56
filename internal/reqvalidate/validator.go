package reqvalidate

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

var (
	// ErrInvalidPolicy wraps the reasons Policy.Validate gives.
	ErrInvalidPolicy = errors.New("reqvalidate: invalid policy")
	// ErrInvalidDocument wraps what is wrong with an OpenAPI document.
	ErrInvalidDocument = errors.New("reqvalidate: invalid OpenAPI document")
	// ErrNoDocument: the policy names an OpenAPI document but New was given none
	// (the KV key is missing or empty). The gateway decides whether to keep the
	// previous Validator or to refuse the route.
	ErrNoDocument = errors.New("reqvalidate: the policy names an OpenAPI document but none was given")
)

// Validator checks requests against one compiled Policy. It is immutable and
// safe for concurrent use.
type Validator struct {
	maxBody, maxURI, maxHeaderBytes, maxHeaders int
	methods                                     []string // GET brings HEAD
	types                                       []mediaRange
	needLength                                  bool // 411 for POST, PUT, PATCH without framing
	api                                         *api // nil without an OpenAPI document

	// The violations CheckHeader returns, built once so refusing allocates nothing.
	longURI, bigHeader, manyHeaders, badMethod, noLength, bigBody, noType, badType *Violation
}

// mediaRange is an accepted media type, lower case; sub or both may be "*".
type mediaRange struct{ typ, sub string }

// New compiles p; doc is the OpenAPI document's bytes, nil if there is none. It
// does not keep p or doc. An invalid policy wraps ErrInvalidPolicy, an invalid
// document ErrInvalidDocument with what is wrong with it.
func New(p Policy, doc []byte) (*Validator, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	v := &Validator{
		maxBody:        p.MaxBodyBytes,
		maxURI:         p.MaxURILength,
		maxHeaderBytes: p.MaxHeaderBytes,
		maxHeaders:     p.MaxHeaders,
		needLength:     len(p.ContentTypes) > 0,
	}
	for _, m := range p.Methods {
		v.methods = append(v.methods, m)
		if m == fasthttp.MethodGet && !slices.Contains(p.Methods, fasthttp.MethodHead) {
			v.methods = append(v.methods, fasthttp.MethodHead)
		}
	}
	accepted := make([]string, 0, len(p.ContentTypes))
	for _, ct := range p.ContentTypes {
		typ, sub, _ := strings.Cut(strings.ToLower(ct), "/")
		v.types = append(v.types, mediaRange{typ, sub})
		accepted = append(accepted, typ+"/"+sub)
	}

	v.longURI = newViolation(fasthttp.StatusRequestURITooLong,
		"request URI longer than "+strconv.Itoa(v.maxURI)+" bytes", "uri", "")
	v.bigHeader = newViolation(fasthttp.StatusRequestHeaderFieldsTooLarge,
		"request header larger than "+strconv.Itoa(v.maxHeaderBytes)+" bytes", "header", "")
	v.manyHeaders = newViolation(fasthttp.StatusRequestHeaderFieldsTooLarge,
		"more than "+strconv.Itoa(v.maxHeaders)+" header fields", "header", "")
	allow := strings.Join(v.methods, ", ")
	v.badMethod = newViolation(fasthttp.StatusMethodNotAllowed, "method not allowed; allowed: "+allow, "method", allow)
	v.noLength = newViolation(fasthttp.StatusLengthRequired,
		"request without Content-Length or chunked Transfer-Encoding", "header.Content-Length", "")
	v.bigBody = newViolation(fasthttp.StatusRequestEntityTooLarge,
		"request body larger than "+strconv.Itoa(v.maxBody)+" bytes", "body", "")
	v.noType = newViolation(fasthttp.StatusUnsupportedMediaType,
		"request body without Content-Type; accepted: "+strings.Join(accepted, ", "), "header.Content-Type", "")
	v.badType = newViolation(fasthttp.StatusUnsupportedMediaType,
		"Content-Type not accepted; accepted: "+strings.Join(accepted, ", "), "header.Content-Type", "")

	switch {
	case doc != nil:
		a, err := newAPI(doc)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidDocument, err)
		}
		v.api = a
	case p.OpenAPI != "":
		return nil, fmt.Errorf("%w (KV key %s)", ErrNoDocument, p.OpenAPI)
	}
	return v, nil
}

// MaxBodySize is the body limit to apply before the body is read: the gateway
// returns it as RequestConfig.MaxRequestBodySize from Server.HeaderReceived, so
// fasthttp refuses an oversized body with ErrBodyTooLarge without reading it. 0
// means the policy sets no limit and the server's own applies.
func (v *Validator) MaxBodySize() int { return v.maxBody }

// CheckHeader runs the checks that need only the request line and the header:
// URI length, header size and count, method, framing (411), Content-Length
// against MaxBodyBytes and the media type. uri is the request target as sent;
// nil means h.RequestURI(). It may run before the body is read (in
// HeaderReceived) or after. It allocates nothing.
func (v *Validator) CheckHeader(h *fasthttp.RequestHeader, uri []byte) *Violation {
	if uri == nil {
		uri = h.RequestURI()
	}
	if v.maxURI > 0 && len(uri) > v.maxURI {
		return v.longURI
	}
	if v.maxHeaderBytes > 0 || v.maxHeaders > 0 {
		size, n := headerSize(h)
		if v.maxHeaderBytes > 0 && size > v.maxHeaderBytes {
			return v.bigHeader
		}
		if v.maxHeaders > 0 && n > v.maxHeaders {
			return v.manyHeaders
		}
	}
	method := h.Method()
	if len(v.methods) > 0 && !v.methodAllowed(method) {
		return v.badMethod
	}
	cl := h.ContentLength()
	if v.needLength && needsBody(method) && !framed(h, cl) {
		return v.noLength
	}
	if v.maxBody > 0 && cl > v.maxBody {
		return v.bigBody
	}
	if cl > 0 || cl == -1 { // a body follows, or has been read
		return v.checkType(h.ContentType())
	}
	return nil
}

// Check runs every check: CheckHeader's, the size of a body read without a
// Content-Length, and the OpenAPI document's for path, query, header, cookie and
// body. path is the path the service will see, decoded, with the route's prefix
// stripped if the route strips it. req is not modified: its body is still there
// to forward.
func (v *Validator) Check(req *fasthttp.Request, path []byte) *Violation {
	h := &req.Header
	if vi := v.CheckHeader(h, nil); vi != nil {
		return vi
	}
	body := req.Body()
	if len(body) > 0 {
		if v.maxBody > 0 && len(body) > v.maxBody {
			return v.bigBody
		}
		if cl := h.ContentLength(); cl == 0 || cl < -1 { // CheckHeader saw no body
			if vi := v.checkType(h.ContentType()); vi != nil {
				return vi
			}
		}
	}
	if v.api == nil {
		return nil
	}
	return v.api.check(req, path, body)
}

func (v *Validator) methodAllowed(m []byte) bool {
	for _, a := range v.methods {
		if string(m) == a {
			return true
		}
	}
	return false
}

// checkType checks the media type of a request that has a body.
func (v *Validator) checkType(ct []byte) *Violation {
	if len(v.types) == 0 {
		return nil
	}
	typ, sub, ok := mediaType(ct)
	if !ok {
		return v.noType
	}
	for _, r := range v.types {
		if (r.typ == "*" || bytes.EqualFold(typ, []byte(r.typ))) && (r.sub == "*" || bytes.EqualFold(sub, []byte(r.sub))) {
			return nil
		}
	}
	return v.badType
}

// mediaType splits a Content-Type value's media type, parameters dropped.
func mediaType(ct []byte) (typ, sub []byte, ok bool) {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	typ, sub, ok = bytes.Cut(ct, []byte{'/'})
	return typ, sub, ok && len(typ) > 0 && len(sub) > 0
}

// needsBody: the methods whose requests carry content, and so must say how long
// it is (RFC 9110 §8.6).
func needsBody(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch:
		return true
	}
	return false
}

// framed reports whether the request said how long its body is. fasthttp gives
// an unframed request (content length -2 while the header is fresh) a length of 0
// once the body has been "read", so after that only the header block as received
// tells an absent Content-Length from "Content-Length: 0". A request built in code
// has no such block and counts as framed.
func framed(h *fasthttp.RequestHeader, cl int) bool {
	switch {
	case cl > 0 || cl == -1:
		return true
	case cl < 0:
		return false
	}
	raw := h.RawHeaders()
	if len(raw) == 0 {
		return true
	}
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if k, _, ok := bytes.Cut(line, []byte{':'}); ok && bytes.EqualFold(bytes.TrimSpace(k), strContentLength) {
			return true
		}
	}
	return false
}

var strContentLength = []byte("Content-Length")

// headerSize measures the header block as received (RawHeaders: the fields,
// their CRLFs and the empty line that ends them) and counts its fields; for a
// request built in code it adds up the fields as they would be written.
func headerSize(h *fasthttp.RequestHeader) (size, n int) {
	if raw := h.RawHeaders(); len(raw) > 0 {
		n = bytes.Count(raw, []byte{'\n'})
		if bytes.HasSuffix(raw, []byte("\n\r\n")) || bytes.HasSuffix(raw, []byte("\n\n")) || len(raw) <= 2 {
			n-- // the empty line
		}
		return len(raw), n
	}
	for k, val := range h.All() {
		size += len(k) + len(val) + 4 // ": " and CRLF
		n++
	}
	return size + 2, n
}

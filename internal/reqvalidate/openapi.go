package reqvalidate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/valyala/fasthttp"
)

// api is a loaded OpenAPI document with its routes compiled.
type api struct {
	doc     *openapi3.T
	routes  []apiRoute // in matching order: concrete paths first
	headers []string   // canonical names of the headers the document's parameters read
	opts    *openapi3filter.Options

	notFound, encoded *Violation
}

// apiRoute is one path of the document under one server base path.
type apiRoute struct {
	pathMatcher
	path       string // the template, as in the document
	item       *openapi3.PathItem
	notAllowed *Violation // 405 with the path's methods in Allow
}

// newAPI loads, validates and compiles an OpenAPI document.
func newAPI(data []byte) (*api, error) {
	loader := openapi3.NewLoader() // external $refs stay forbidden
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, err
	}
	switch {
	case doc.OpenAPI == "":
		return nil, errors.New(`no "openapi" version field: want an OpenAPI 3.x document`)
	case !strings.HasPrefix(doc.OpenAPI, "3."):
		return nil, fmt.Errorf("openapi version %q: want a 3.x document", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	if doc.Paths == nil || doc.Paths.Len() == 0 {
		return nil, errors.New("the document has no paths")
	}

	a := &api{
		doc:      doc,
		notFound: newViolation(fasthttp.StatusNotFound, "no such operation", "path", ""),
		encoded: newViolation(fasthttp.StatusUnsupportedMediaType,
			"a request body with a Content-Encoding cannot be validated; send it unencoded", "header.Content-Encoding", ""),
		opts: &openapi3filter.Options{
			SkipSettingDefaults: true, // forward what the client sent
		},
	}
	if !doc.IsOpenAPI31OrLater() { // 3.1 validates with JSON Schema 2020-12, which cannot leave values out
		a.opts.SchemaValidationOptions = []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()}
	}
	// Authentication is another gateway feature: without requirements,
	// openapi3filter checks none.
	doc.Security = nil

	headers := map[string]bool{}
	params := func(ps openapi3.Parameters) {
		for _, p := range ps {
			if p.Value != nil && p.Value.In == openapi3.ParameterInHeader {
				headers[http.CanonicalHeaderKey(p.Value.Name)] = true
			}
			if p.Value != nil && p.Value.In == openapi3.ParameterInCookie {
				headers["Cookie"] = true
			}
		}
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		params(item.Parameters)
		ops := item.Operations()
		methods := make([]string, 0, len(ops)+1)
		for m, op := range ops {
			op.Security = nil
			params(op.Parameters)
			if op.RequestBody != nil {
				headers["Content-Type"] = true
			}
			methods = append(methods, m)
		}
		if item.Get != nil && item.Head == nil {
			methods = append(methods, http.MethodHead)
		}
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		notAllowed := newViolation(fasthttp.StatusMethodNotAllowed,
			"method not allowed for "+path+"; allowed: "+allow, "method", allow)

		servers := doc.Servers
		if len(item.Servers) > 0 {
			servers = item.Servers
		}
		for _, base := range basePaths(servers) {
			m, err := compileTemplate(base, path)
			if err != nil {
				return nil, err
			}
			a.routes = append(a.routes, apiRoute{pathMatcher: m, path: path, item: item, notAllowed: notAllowed})
		}
	}
	for h := range headers {
		a.headers = append(a.headers, h)
	}
	slices.Sort(a.headers)
	return a, nil
}

// basePaths are the path parts of the servers' URLs ("/v1" of
// "https://{region}.api.example/v1"), variables given their defaults, and always
// "" last: a path matches with or without a server's base path in front.
func basePaths(servers openapi3.Servers) []string {
	var bases []string
	for _, s := range servers {
		u := s.URL
		for name, v := range s.Variables {
			u = strings.ReplaceAll(u, "{"+name+"}", v.Default)
		}
		if _, rest, ok := strings.Cut(u, "://"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				u = rest[i:]
			} else {
				u = ""
			}
		}
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		u = strings.TrimSuffix(u, "/")
		if u != "" && u[0] == '/' && !slices.Contains(bases, u) {
			bases = append(bases, u)
		}
	}
	return append(bases, "")
}

// scratch is the per-check working memory of the OpenAPI validation: the
// net/http request openapi3filter wants, built from the fasthttp one.
type scratch struct {
	req   http.Request
	url   url.URL
	body  bodyReader
	input openapi3filter.RequestValidationInput
	route routers.Route
	hdr   http.Header
	path  map[string]string
	ps    [8]param
}

// bodyReader is the request body as an io.ReadCloser over the fasthttp
// request's own bytes, which it only reads.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

var scratchPool = sync.Pool{New: func() any {
	return &scratch{hdr: http.Header{}, path: map[string]string{}}
}}

func (s *scratch) release() {
	clear(s.hdr)
	clear(s.path)
	s.body.Reset(nil)
	s.req, s.url, s.input, s.route = http.Request{}, url.URL{}, openapi3filter.RequestValidationInput{}, routers.Route{}
	scratchPool.Put(s)
}

// check validates req, whose path for the service is path, against the document.
func (a *api) check(req *fasthttp.Request, path, body []byte) *Violation {
	s := scratchPool.Get().(*scratch)
	defer s.release()

	if len(path) == 0 {
		path = slash
	}
	method := methodString(req.Header.Method())
	var (
		rt *apiRoute
		ps []param
	)
	for i := range a.routes {
		var ok bool
		if ps, ok = a.routes[i].match(path, s.ps[:0]); ok {
			rt = &a.routes[i]
			break
		}
	}
	if rt == nil {
		return a.notFound
	}
	op := rt.item.GetOperation(method)
	if op == nil && method == http.MethodHead {
		op = rt.item.Get
	}
	if op == nil {
		return rt.notAllowed
	}
	if len(body) > 0 && op.RequestBody != nil {
		if ce := req.Header.ContentEncoding(); len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
			return a.encoded
		}
	}

	for _, p := range ps {
		s.path[p.name] = string(p.val)
	}
	s.url.Path = string(path)
	s.url.RawQuery = string(req.URI().QueryString())
	for _, name := range a.headers {
		for _, val := range req.Header.PeekAll(name) {
			s.hdr[name] = append(s.hdr[name], string(val))
		}
	}
	s.req = http.Request{Method: method, URL: &s.url, Header: s.hdr, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: http.NoBody, Host: string(req.Host())}
	if len(body) > 0 {
		s.body.Reset(body)
		s.req.Body, s.req.ContentLength = &s.body, int64(len(body))
	}
	s.route = routers.Route{Spec: a.doc, Path: rt.path, PathItem: rt.item, Method: method, Operation: op}
	s.input = openapi3filter.RequestValidationInput{Request: &s.req, PathParams: s.path, Route: &s.route, Options: a.opts}
	if err := openapi3filter.ValidateRequest(context.Background(), &s.input); err != nil {
		return violationOf(err)
	}
	return nil
}

var slash = []byte("/")

// methodString is string(m) without allocating for the common methods.
func methodString(m []byte) string {
	for _, s := range [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodHead, http.MethodOptions} {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// violationOf translates openapi3filter's error into a Violation, naming the
// parameter or body field and leaving the offending value out.
func violationOf(err error) *Violation {
	var re *openapi3filter.RequestError
	if !errors.As(err, &re) {
		return &Violation{Status: fasthttp.StatusBadRequest, Reason: "request does not match the API: " + err.Error()}
	}
	switch {
	case re.Parameter != nil:
		p := re.Parameter
		v := &Violation{Status: fasthttp.StatusBadRequest, Field: p.In + "." + p.Name}
		if p.In == openapi3.ParameterInHeader {
			v.Field = p.In + "." + http.CanonicalHeaderKey(p.Name)
		}
		what := p.In + " parameter " + strconv.Quote(p.Name)
		switch {
		case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
			v.Reason = what + " is required"
		case errors.Is(re.Err, openapi3filter.ErrInvalidEmptyValue):
			v.Reason = what + " must not be empty"
		default:
			ptr, reason := explain(re.Err)
			v.Field += ptr
			v.Reason = what + ": " + reason
		}
		return v
	case re.RequestBody != nil:
		v := &Violation{Status: fasthttp.StatusBadRequest, Field: "body"}
		switch {
		case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
			v.Reason = "request body is required"
		case re.Err == nil && strings.HasPrefix(re.Reason, "header Content-Type has unexpected value"):
			v.Status, v.Field = fasthttp.StatusUnsupportedMediaType, "header.Content-Type"
			v.Reason = "Content-Type not accepted; accepted: " + strings.Join(contentTypes(re.RequestBody), ", ")
		case re.Reason == "failed to decode request body":
			v.Reason = "request body cannot be decoded"
			if typ, sub, ok := mediaType([]byte(re.Input.Request.Header.Get("Content-Type"))); ok {
				v.Reason += " as " + strings.ToLower(string(typ)+"/"+string(sub))
			}
			if ptr, reason := explain(re.Err); reason != "" {
				v.Reason += ": " + reason
				v.Field += ptr
			}
		default:
			ptr, reason := explain(re.Err)
			v.Field += ptr
			v.Reason = "request body: " + reason
		}
		return v
	}
	return &Violation{Status: fasthttp.StatusBadRequest, Reason: re.Error()}
}

// explain finds the first schema or parse error in err: where it is, as a field
// suffix (".items[0].qty"), and what is wrong, without the value.
func explain(err error) (ptr, reason string) {
	var se *openapi3.SchemaError
	var pe *openapi3filter.ParseError
	var me openapi3.MultiError
	switch {
	case errors.As(err, &me) && len(me) > 0:
		return explain(me[0])
	case errors.As(err, &se):
		ptr = fieldPath(se.JSONPointer())
		reason = trimLocation(se.Reason)
		// An unknown property is reported on its object, named in the reason only.
		if name, ok := strings.CutSuffix(reason, " is unsupported"); ok && se.SchemaField == "properties" {
			if name, err := strconv.Unquote(strings.TrimPrefix(name, "property ")); err == nil {
				ptr += fieldPath([]string{name})
			}
		}
		if reason == "" {
			reason = "does not match the schema's " + strconv.Quote(se.SchemaField)
		}
		return ptr, reason
	case errors.As(err, &pe):
		var b strings.Builder
		for _, p := range pe.Path() {
			b.WriteString(fieldPath([]string{fmt.Sprint(p)}))
		}
		for pe.Reason == "" {
			inner, ok := pe.Cause.(*openapi3filter.ParseError)
			if !ok {
				break
			}
			pe = inner
		}
		switch reason = pe.Reason; {
		case reason == "" && pe.Cause != nil:
			reason = pe.Cause.Error() // a decoder's, such as encoding/json's syntax errors
		case reason == "":
			reason = "cannot be parsed"
		case strings.HasPrefix(reason, "an invalid "): // "an invalid integer"
			reason = "must be a valid " + strings.TrimPrefix(reason, "an invalid ")
		}
		return b.String(), reason
	case err == nil:
		return "", ""
	}
	return "", err.Error()
}

// trimLocation drops the locations the JSON Schema 2020-12 validator (OpenAPI
// 3.1) puts in front of its reasons (`error at "/qty": at '/qty': `): the
// Violation's field says where.
func trimLocation(reason string) string {
	for {
		switch {
		case strings.HasPrefix(reason, `error at "`):
			if _, rest, ok := strings.Cut(reason, `": `); ok {
				reason = rest
				continue
			}
		case strings.HasPrefix(reason, "at '"):
			if _, rest, ok := strings.Cut(reason, "': "); ok {
				reason = rest
				continue
			}
		}
		return reason
	}
}

// fieldPath renders a JSON pointer's parts as ".items[0].qty".
func fieldPath(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 64); err == nil {
			b.WriteString("[" + p + "]")
		} else {
			b.WriteString("." + p)
		}
	}
	return b.String()
}

func contentTypes(rb *openapi3.RequestBody) []string {
	var types []string
	for ct := range rb.Content {
		types = append(types, ct)
	}
	slices.Sort(types)
	return types
}

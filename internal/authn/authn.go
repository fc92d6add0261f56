package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Deps is what the gateway hands to New. Only what the policy's methods use must be
// set.
type Deps struct {
	// KV holds JWKS documents named by jwks_key. Needed for jwt with jwks_key.
	KV KVReader
	// APIKeys is the gateway's one shared, started APIKeyStore. Needed for api_key.
	APIKeys *APIKeyStore
	// Service is the service the route leads to: an API key scoped to services is
	// accepted only if it names this one.
	Service string
	// HTTP sends forward-auth requests (a *fasthttp.Client or *fasthttp.HostClient).
	// Default: a client of the Authenticator's own.
	HTTP ForwardDoer
	// Now is the clock for exp and nbf. Default time.Now.
	Now func() time.Time
	// Logger gets the JWKS watcher's problems. Default: discard.
	Logger *slog.Logger
}

// ForwardDoer sends a forward-auth request; *fasthttp.Client and *fasthttp.HostClient
// are ForwardDoers. It must be safe for concurrent use.
type ForwardDoer interface {
	DoTimeout(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error
}

var (
	_ ForwardDoer = (*fasthttp.Client)(nil)
	_ ForwardDoer = (*fasthttp.HostClient)(nil)
)

// Result is the verdict on one request.
type Result struct {
	OK     bool
	Status int // when !OK: 401, 403, or 503 (forward auth unavailable)
	// Challenge is the WWW-Authenticate value to send with the status, if not empty.
	Challenge string
	// Reason says in one line why the request was refused, for the log and the error
	// body. It never contains a credential, and does not tell an unknown user from a
	// wrong password.
	Reason string
	// Body and ContentType, when Body is not nil, are the answer to send instead of the
	// gateway's own error body (the auth service's answer in forward auth).
	Body        []byte
	ContentType string
	// Identity is who the request is from: the JWT's identity claim, the API key's
	// name, the Basic user, or what the auth service said.
	Identity string
	// Method is the method that decided: "jwt", "api_key", "basic" or "forward".
	Method string
	// Claims are the JWT's claims (numbers as json.Number). The map is shared between
	// all requests with the same token: read it, never change it.
	Claims map[string]any
}

// Claim returns a JWT claim as a string: strings as they are, numbers and booleans
// formatted, anything else (and a missing claim) "". Meant for keys such as rate
// limiting by tenant.
func (r Result) Claim(name string) string {
	switch v := r.Claims[name].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// method is one way to authenticate.
type method interface {
	// authenticate checks req; present is false when req carries no credential of
	// this method (then res is ignored).
	authenticate(req *fasthttp.Request) (res Result, present bool)
	// challenge is the WWW-Authenticate challenge asking for this method's credential.
	challenge() string
}

// Authenticator applies one route's Policy. It is safe for concurrent use.
type Authenticator struct {
	idHeader  string
	protected []string // header names stripped from every request, normalized
	methods   []method
	names     []string // methods' names, same order
	challenge string   // all methods' challenges, for a request without credentials
	jwt       *jwtAuth
	cancel    context.CancelFunc
	done      chan struct{}
}

// New checks p and builds its Authenticator, reading the JWKS document (from the file,
// or once from the KV store) so that a broken one is an error here rather than a
// route that refuses everything. With jwks_key it starts a watcher: call Close when
// the route goes away. New keeps no reference to p.
func New(p Policy, d Deps) (*Authenticator, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{idHeader: p.identityHeader()}
	a.protected = []string{normHeader(a.idHeader)}
	add := func(name string, m method) {
		a.methods, a.names = append(a.methods, m), append(a.names, name)
	}
	if p.JWT != nil {
		j, err := newJWTAuth(*p.JWT, d)
		if err != nil {
			return nil, err
		}
		a.jwt = j
		add("jwt", j)
	}
	if p.APIKey != nil {
		if d.APIKeys == nil {
			return nil, errors.New("auth.api_key: the gateway has no API key store (Deps.APIKeys)")
		}
		add("api_key", newAPIKeyAuth(*p.APIKey, d))
	}
	if p.Basic != nil {
		add("basic", newBasicAuth(*p.Basic))
	}
	if p.Forward != nil {
		f := newForwardAuth(*p.Forward, d, a.idHeader)
		for _, h := range p.Forward.CopyHeaders {
			a.protected = append(a.protected, normHeader(h))
		}
		add("forward", f)
	}
	var ch []string
	for _, m := range a.methods {
		if c := m.challenge(); c != "" {
			ch = append(ch, c)
		}
	}
	a.challenge = strings.Join(ch, ", ")
	if a.jwt != nil && p.JWT.JWKSKey != "" {
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel, a.done = cancel, make(chan struct{})
		go func() {
			defer close(a.done)
			a.jwt.watchKV(ctx, d.Logger)
		}()
	}
	return a, nil
}

// Close stops the JWKS watcher, if any. The Authenticator keeps working with the keys
// it has.
func (a *Authenticator) Close() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
}

// Reload re-reads a jwks_file (the gateway calls it on SIGHUP). On an error the keys
// in use stay. Tokens verified with the previous keys are verified again.
func (a *Authenticator) Reload() error {
	if a.jwt == nil || a.jwt.pol.JWKSFile == "" {
		return nil
	}
	return a.jwt.loadFile()
}

// IdentityHeader is the header the identity goes in.
func (a *Authenticator) IdentityHeader() string { return a.idHeader }

// Authenticate strips the identity header (and forward auth's copy_headers) from req
// whatever the outcome, then checks the request's credentials. On success it sets the
// identity header for the upstream; otherwise the Result says what to answer.
//
// With several methods, each whose credential the request carries is tried in the
// order jwt, api_key, basic, forward (forward always counts as present), and the first
// success wins. If none succeeds, the answer is the failure of the first method tried,
// or, when the request carried no credential at all, 401 with every method's
// challenge.
//
// Call it after the route is matched and before the gateway rewrites the request, so
// that a forward-auth service sees the URI the client sent.
func (a *Authenticator) Authenticate(req *fasthttp.Request) Result {
	stripHeaders(&req.Header, a.protected)
	var first Result
	tried := false
	for i, m := range a.methods {
		res, present := m.authenticate(req)
		if !present {
			continue
		}
		res.Method = a.names[i]
		if res.OK {
			if !validHeaderValue(res.Identity) {
				return Result{Status: fasthttp.StatusUnauthorized, Challenge: a.challenge, Method: res.Method,
					Reason: "the identity is not a valid header value"}
			}
			if res.Identity != "" {
				req.Header.Set(a.idHeader, res.Identity)
			}
			return res
		}
		if !tried {
			first, tried = res, true
		}
	}
	if !tried {
		return Result{Status: fasthttp.StatusUnauthorized, Challenge: a.challenge, Reason: "no credentials"}
	}
	if first.Status == fasthttp.StatusUnauthorized && first.Challenge == "" && first.Body == nil {
		first.Challenge = a.challenge
	}
	return first
}

// StripIdentity removes every header that could pass for header (any case, '_' for
// '-': some frameworks read X_Wolke_Identity as X-Wolke-Identity) from req. Routes
// with auth do this in Authenticate; the gateway must call it on the requests of every
// other route too, or a client could name itself to a service behind a route without
// auth that trusts the header anyway.
func StripIdentity(req *fasthttp.Request, header string) {
	if header == "" {
		header = DefaultIdentityHeader
	}
	stripHeaders(&req.Header, []string{normHeader(header)})
}

// normHeader lowercases name and turns '_' into '-'.
func normHeader(name string) string {
	b := []byte(name)
	for i, c := range b {
		b[i] = normByte(c)
	}
	return string(b)
}

func normByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

func matchHeader(k []byte, norm string) bool {
	if len(k) != len(norm) {
		return false
	}
	for i := range len(k) {
		if normByte(k[i]) != norm[i] {
			return false
		}
	}
	return true
}

// stripHeaders deletes the headers whose normalized names are in names, in as many
// passes as there are such headers (usually one pass, finding none).
func stripHeaders(h *fasthttp.RequestHeader, names []string) {
	var buf [64]byte // room for a header name: found stays on the stack
	for range 64 {   // a client can send a few; each pass removes every copy of one name
		var found []byte
		for k := range h.All() {
			for _, n := range names {
				if matchHeader(k, n) {
					found = append(buf[:0], k...)
					break
				}
			}
			if found != nil {
				break
			}
		}
		if found == nil {
			return
		}
		h.DelBytes(found)
	}
}

// validHeaderValue rejects control characters, which would let an identity split the
// header.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// authScheme splits an Authorization value into its scheme (matched case-insensitively
// against want) and credentials, trimmed.
func authScheme(h []byte, want string) (cred []byte, ok bool) {
	if len(h) < len(want) || !strings.EqualFold(string(h[:len(want)]), want) {
		return nil, false
	}
	rest := h[len(want):]
	if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
		return nil, false // another scheme with this prefix
	}
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	for len(rest) > 0 && (rest[len(rest)-1] == ' ' || rest[len(rest)-1] == '\t') {
		rest = rest[:len(rest)-1]
	}
	return rest, true
}

// quoteParam makes s safe inside a quoted auth-param (error_description, realm).
func quoteParam(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func unauthorized(challenge, format string, args ...any) Result {
	return Result{Status: fasthttp.StatusUnauthorized, Challenge: challenge, Reason: fmt.Sprintf(format, args...)}
}

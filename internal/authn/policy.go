package authn

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults of the policy fields that may be left out.
const (
	DefaultIdentityHeader = "X-Wolke-Identity"
	DefaultAPIKeyHeader   = "X-API-Key"
	DefaultIdentityClaim  = "sub"
	DefaultLeeway         = 30 * time.Second
	DefaultForwardTimeout = 2 * time.Second
	DefaultRealm          = "wolke"
)

// Policy says how the requests of one route authenticate. It is part of the route's
// policy document (JSON).
//
// One method is the usual case. Several methods mean "any of them": a request is let
// through if one of the methods whose credential it carries accepts it (see Authenticate
// for the order and for which failure is reported when none does).
type Policy struct {
	JWT     *JWTPolicy     `json:"jwt,omitempty"`
	APIKey  *APIKeyPolicy  `json:"api_key,omitempty"`
	Basic   *BasicPolicy   `json:"basic,omitempty"`
	Forward *ForwardPolicy `json:"forward,omitempty"`

	// IdentityHeader carries the authenticated identity to the upstream. Whatever the
	// client sent under this name (in any case, with '_' for '-') is removed first.
	// Default "X-Wolke-Identity".
	IdentityHeader string `json:"identity_header,omitempty"`
}

// JWTPolicy accepts bearer tokens (RFC 6750) signed with HS256, RS256 or ES256 by a key
// of a JWKS document.
type JWTPolicy struct {
	// JWKSFile is a JWKS document on disk, re-read by Authenticator.Reload.
	JWKSFile string `json:"jwks_file,omitempty"`
	// JWKSKey is a KV key holding the JWKS document, followed by a blocking query.
	// Exactly one of JWKSFile and JWKSKey is set.
	JWKSKey string `json:"jwks_key,omitempty"`
	// Issuer, if set, must equal the token's iss.
	Issuer string `json:"issuer,omitempty"`
	// Audience, if set, must contain one of the token's aud values.
	Audience []string `json:"audience,omitempty"`
	// RequiredClaims: each claim must equal the value (a string claim) or contain it
	// (an array claim). A valid token that fails this gets 403, not 401.
	RequiredClaims map[string]string `json:"required_claims,omitempty"`
	// IdentityClaim names the claim that becomes the identity. Default "sub".
	IdentityClaim string `json:"identity_claim,omitempty"`
	// Leeway is the clock skew allowed for exp and nbf. Default 30s; at most 5m.
	Leeway Duration `json:"leeway,omitempty"`
}

// APIKeyPolicy accepts the keys made by `wolke proxy apikey create`, sent in Header or
// as "Authorization: ApiKey <key>".
type APIKeyPolicy struct {
	// Header carrying the key. Default "X-API-Key".
	Header string `json:"header,omitempty"`
}

// BasicPolicy accepts HTTP Basic credentials (RFC 7617) checked against bcrypt hashes.
type BasicPolicy struct {
	// Realm named in the challenge. Default "wolke".
	Realm string `json:"realm,omitempty"`
	// Users maps a user name to the bcrypt hash of its password
	// (htpasswd -nbB, or any bcrypt library).
	Users map[string]string `json:"users"`
}

// ForwardPolicy asks an external service about each request (forward auth).
type ForwardPolicy struct {
	// URL of the auth service, http or https.
	URL string `json:"url"`
	// Timeout for the auth service's answer. Default 2s.
	Timeout Duration `json:"timeout,omitempty"`
	// CopyHeaders are copied from the auth service's 2xx answer to the upstream
	// request; a header the answer lacks is removed from the upstream request, so a
	// client cannot supply it itself.
	CopyHeaders []string `json:"copy_headers,omitempty"`
}

// Duration is a time.Duration that reads and writes Go's duration syntax in JSON
// ("30s"), like the gateway's own policy durations.
type Duration time.Duration

// MarshalJSON writes the duration as a string like "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

// UnmarshalJSON reads a string like "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("duration must be a string like \"2s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// reservedHeaders may not be used as the identity header or be copied from a forward
// auth answer: the gateway or HTTP itself gives them meaning.
var reservedHeaders = map[string]bool{
	"authorization": true, "host": true, "content-length": true, "transfer-encoding": true,
	"connection": true, "cookie": true, "te": true, "upgrade": true, "trailer": true,
	"keep-alive": true, "proxy-authorization": true, "x-forwarded-for": true, "forwarded": true,
}

// Validate reports the first thing wrong with p, in one line, without reading files or
// the KV store (New does that).
func (p Policy) Validate() error {
	if p.JWT == nil && p.APIKey == nil && p.Basic == nil && p.Forward == nil {
		return fmt.Errorf("auth: no method: set one (or more) of jwt, api_key, basic, forward")
	}
	if p.IdentityHeader != "" {
		if err := validHeaderName(p.IdentityHeader); err != nil {
			return fmt.Errorf("auth: identity_header: %v", err)
		}
	}
	if reservedHeaders[strings.ToLower(p.identityHeader())] {
		return fmt.Errorf("auth: identity_header %q is a reserved header", p.IdentityHeader)
	}
	if j := p.JWT; j != nil {
		switch {
		case (j.JWKSFile == "") == (j.JWKSKey == ""):
			return fmt.Errorf("auth.jwt: set exactly one of jwks_file and jwks_key")
		case strings.HasPrefix(j.JWKSKey, "/"):
			return fmt.Errorf("auth.jwt: jwks_key %q must not start with /", j.JWKSKey)
		case j.Leeway < 0 || time.Duration(j.Leeway) > 5*time.Minute:
			return fmt.Errorf("auth.jwt: leeway must be 0..5m, got %s", time.Duration(j.Leeway))
		}
		for _, a := range j.Audience {
			if a == "" {
				return fmt.Errorf("auth.jwt: audience has an empty entry")
			}
		}
		for c := range j.RequiredClaims {
			if c == "" {
				return fmt.Errorf("auth.jwt: required_claims has an empty claim name")
			}
		}
	}
	if k := p.APIKey; k != nil && k.Header != "" {
		if err := validHeaderName(k.Header); err != nil {
			return fmt.Errorf("auth.api_key: header: %v", err)
		}
		if strings.EqualFold(k.Header, p.identityHeader()) {
			return fmt.Errorf("auth.api_key: header must differ from the identity header")
		}
	}
	if b := p.Basic; b != nil {
		if len(b.Users) == 0 {
			return fmt.Errorf("auth.basic: no users")
		}
		if strings.ContainsAny(b.Realm, "\"\\\r\n") {
			return fmt.Errorf("auth.basic: realm must not contain quotes, backslashes or line breaks")
		}
		for u, h := range b.Users {
			if u == "" || strings.ContainsAny(u, ":\r\n") {
				return fmt.Errorf("auth.basic: user name %q: must be non-empty, without ':' or line breaks", u)
			}
			if _, err := bcrypt.Cost([]byte(h)); err != nil {
				return fmt.Errorf("auth.basic: user %q: password is not a bcrypt hash ($2a$/$2b$/$2y$...)", u)
			}
		}
	}
	if f := p.Forward; f != nil {
		u, err := url.Parse(f.URL)
		switch {
		case f.URL == "":
			return fmt.Errorf("auth.forward: url is required")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return fmt.Errorf("auth.forward: url %q: want http(s)://HOST[:PORT]/PATH", f.URL)
		case f.Timeout < 0:
			return fmt.Errorf("auth.forward: timeout must not be negative")
		}
		for _, h := range f.CopyHeaders {
			if err := validHeaderName(h); err != nil {
				return fmt.Errorf("auth.forward: copy_headers: %v", err)
			}
			if reservedHeaders[strings.ToLower(h)] {
				return fmt.Errorf("auth.forward: copy_headers: %q is a reserved header", h)
			}
		}
	}
	return nil
}

func (p Policy) identityHeader() string {
	if p.IdentityHeader == "" {
		return DefaultIdentityHeader
	}
	return p.IdentityHeader
}

// validHeaderName accepts RFC 9110 tokens.
func validHeaderName(s string) error {
	if s == "" {
		return fmt.Errorf("empty header name")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return fmt.Errorf("%q is not a valid header name", s)
	}
	return nil
}

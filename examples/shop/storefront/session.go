package main

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"
)

// cookieName holds the shopper's JWT, issued by accounts. The storefront never
// verifies it (the gateway does, on every cart and orders request); it only reads
// the name and the expiry to show them.
const cookieName = "shop_token"

// session is the signed-in shopper, from the cookie.
type session struct {
	Token string
	ID    string // sub
	Name  string
	Email string
	Exp   time.Time
}

// claims are the JWT claims the storefront shows.
type claims struct {
	Sub   string `json:"sub"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Exp   int64  `json:"exp"`
}

// parseToken reads the claims of a JWT without verifying its signature. ok is false
// for anything that is not a JWT with a subject and an expiry.
func parseToken(token string) (session, bool) {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return session{}, false
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok || len(payload) > 8192 {
		return session{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return session{}, false
	}
	var c claims
	if json.Unmarshal(b, &c) != nil || c.Sub == "" || c.Exp == 0 {
		return session{}, false
	}
	name := c.Name
	if name == "" {
		name = c.Email
	}
	return session{Token: token, ID: c.Sub, Name: name, Email: c.Email, Exp: time.Unix(c.Exp, 0)}, true
}

// sessionOf returns the request's session. stale is true when the request carries
// a cookie that is no session (expired or malformed), which the answer should
// clear.
func sessionOf(r *http.Request, now time.Time) (s *session, stale bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	ss, ok := parseToken(c.Value)
	if !ok || !now.Before(ss.Exp) {
		return nil, true
	}
	return &ss, false
}

// setSession stores token in the cookie until exp.
func setSession(w http.ResponseWriter, r *http.Request, token string, exp time.Time) {
	maxAge := int(time.Until(exp).Seconds())
	if maxAge <= 0 {
		maxAge = 3600
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r),
	})
}

// clearSession removes the cookie.
func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r),
	})
}

// isHTTPS says whether the browser reached the shop over TLS (directly or through
// the gateway).
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// clientAddr is what the storefront sends on as X-Forwarded-For: the chain the
// gateway gave it (which names the browser first), else the peer's address.
func clientAddr(r *http.Request) string {
	if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
		return strings.Join(v, ", ")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localPath returns next if it is a path on this site, else "/" (no open
// redirects through ?next=).
func localPath(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) ||
		strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

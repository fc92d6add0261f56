package httpapi

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// Every allocation per request is paid again in garbage collection, and on a catalog
// of 10,000 instances a collection is long: under a saturating load the collector's
// cycles, not the handlers, made the tail of health/service. So serveFast builds each
// request into a pooled fastRequest: the handlers run synchronously and keep none of
// it once they return. Strings are never pooled (a key taken from the path may be
// stored in the state); the ones a keep-alive client sends unchanged with every
// request (Host, most header values) are reused per connection instead.

// fastRequest is the pooled part of one request.
type fastRequest struct {
	req    http.Request
	url    url.URL
	header http.Header
	form   url.Values // the parsed query; queryOf returns it
	hslots stringSlots
	qslots stringSlots
	body   bytes.Reader
	rc     readCloser
}

// readCloser is io.NopCloser without the allocation.
type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// bodyOf returns a reader of b for r.Body.
func (fr *fastRequest) bodyOf(b []byte) *readCloser {
	fr.body.Reset(b)
	fr.rc = readCloser{&fr.body}
	return &fr.rc
}

func (fr *fastRequest) release() {
	fr.req = http.Request{}
	fr.url = url.URL{}
	clear(fr.header)
	clear(fr.form)
	fr.hslots.reset()
	fr.qslots.reset()
	fr.body.Reset(nil)
	fr.rc = readCloser{}
	fastRequests.Put(fr)
}

// stringSlots hands out one-element slices of one array for the values of a header
// or query map. Each slice is capped at its element, so a second value of the same
// name (or a handler's append) copies out.
type stringSlots struct {
	a [16]string
	n int
}

func (s *stringSlots) take(v string) []string {
	if s.n == len(s.a) {
		return []string{v}
	}
	s.a[s.n] = v
	s.n++
	return s.a[s.n-1 : s.n : s.n]
}

func (s *stringSlots) reset() {
	clear(s.a[:s.n])
	s.n = 0
}

// parseQuery fills the pooled form from query exactly as url.ParseQuery does (pairs
// split on "&", a pair with ";" or an invalid escape skipped), taking keys and values
// that need no unescaping as substrings of query.
func (fr *fastRequest) parseQuery(query string) url.Values {
	m := fr.form
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		key, err := queryUnescape(key)
		if err != nil {
			continue
		}
		if value, err = queryUnescape(value); err != nil {
			continue
		}
		if prev, ok := m[key]; ok {
			m[key] = append(prev, value)
			continue
		}
		m[key] = fr.qslots.take(value)
	}
	return m
}

func queryUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// parseRequestURL parses raw into u exactly as url.ParseRequestURI does. A path of
// characters that need no escaping, with or without a query, is taken apart in place;
// anything else goes to url.ParseRequestURI.
func parseRequestURL(raw string, u *url.URL) error {
	if path, query, hasQuery, ok := plainRequestURI(raw); ok {
		*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
		return nil
	}
	p, err := url.ParseRequestURI(raw)
	if err != nil {
		return err
	}
	*u = *p
	return nil
}

// plainRequestURI splits raw when url.ParseRequestURI would take it as it is: it starts
// with "/", its path holds only characters that URL.EscapedPath leaves alone (so
// RawPath stays empty) and no "%", and nothing in it is a control character.
func plainRequestURI(raw string) (path, query string, hasQuery, ok bool) {
	if raw == "" || raw[0] != '/' {
		return "", "", false, false
	}
	path, query, hasQuery = strings.Cut(raw, "?")
	for i := 0; i < len(path); i++ {
		if !pathSafe[path[i]] {
			return "", "", false, false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < 0x20 || c == 0x7f {
			return "", "", false, false
		}
	}
	return path, query, hasQuery, true
}

// pathSafe marks the bytes that net/url does not escape in a path.
var pathSafe = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// connStrings are the strings of a connection's last requests, reused while the
// client keeps sending the same bytes. fasthttp serves one request of a connection
// at a time, so they need no lock.
type connStrings struct {
	remote string
	uri    string
	host   string
	vals   [8]struct{ key, val string }
	next   int
}

// connStringsOf returns the connection's strings; a connection that does not keep
// them (in tests) gets fresh ones.
func connStringsOf(ctx *fasthttp.RequestCtx) *connStrings {
	if c, ok := ctx.Conn().(interface{ connStrings() *connStrings }); ok {
		return c.connStrings()
	}
	return new(connStrings)
}

func (c *connStrings) remoteOf(ctx *fasthttp.RequestCtx) string {
	if c.remote == "" {
		c.remote = ctx.RemoteAddr().String()
	}
	return c.remote
}

// uriOf returns the request URI: a client polling one URL sends the same one each time.
func (c *connStrings) uriOf(b []byte) string {
	if c.uri != string(b) {
		c.uri = string(b)
	}
	return c.uri
}

func (c *connStrings) hostOf(b []byte) string {
	if c.host != string(b) {
		c.host = string(b)
	}
	return c.host
}

func (c *connStrings) valueOf(key string, v []byte) string {
	for i := range c.vals {
		if e := &c.vals[i]; e.key == key && e.val == string(v) {
			return e.val
		}
	}
	s := string(v)
	c.vals[c.next] = struct{ key, val string }{key, s}
	c.next = (c.next + 1) % len(c.vals)
	return s
}

package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
)

// These tests hold the event loop's HTTP/1.1 heads (h1.go) to net/http: whatever
// the loop accepts, net/http must read the same way; what the loop hands to
// fasthttp (h1Other) is allowed to be stricter than net/http.

type h1Pair = [2]string

func h1Fields(fs []h1Field) []h1Pair {
	out := make([]h1Pair, len(fs))
	for i, f := range fs {
		out[i] = h1Pair{string(f.name), string(f.value)}
	}
	return out
}

func h1FieldsEqual(a, b []h1Pair) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s h1Status) String() string {
	switch s {
	case h1More:
		return "h1More"
	case h1OK:
		return "h1OK"
	case h1Other:
		return "h1Other"
	}
	return "h1Status(" + strconv.Itoa(int(s)) + ")"
}

// manyFields returns n distinct "X-Fn: v" lines and their parsed pairs.
func manyFields(n int) (string, []h1Pair) {
	var b strings.Builder
	var fs []h1Pair
	for i := range n {
		name := fmt.Sprintf("X-F%d", i)
		fmt.Fprintf(&b, "%s: v%d\r\n", name, i)
		fs = append(fs, h1Pair{name, fmt.Sprintf("v%d", i)})
	}
	return b.String(), fs
}

type reqCase struct {
	name string
	head string // for h1OK: exactly the head; n must be len(head)
	body string // bytes after the head (h1OK rows only)
	st   h1Status

	method, uri, path, host string
	cl                      int
	close                   bool
	fields                  []h1Pair
}

func reqCases() []reqCase {
	fields63, pairs63 := manyFields(63)
	fields64, _ := manyFields(64)
	ok := func(name, head, body, method, uri, path, host string, cl int, close bool, fields ...h1Pair) reqCase {
		return reqCase{name: name, head: head, body: body, st: h1OK, method: method, uri: uri, path: path,
			host: host, cl: cl, close: close, fields: fields}
	}
	more := func(name, head string) reqCase { return reqCase{name: name, head: head, st: h1More} }
	other := func(name, head string) reqCase { return reqCase{name: name, head: head, st: h1Other} }
	const get = "GET / HTTP/1.1\r\nHost: h\r\n"
	return []reqCase{
		ok("minimal", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "", "GET", "/", "/", "example.com", 0, false,
			h1Pair{"Host", "example.com"}),
		ok("post with body and query", "POST /api/v1/items?sort=asc&x=%2F HTTP/1.1\r\nHost: api.example.com:8080\r\n"+
			"Content-Length: 11\r\nContent-Type: text/plain\r\n\r\n", "hello world",
			"POST", "/api/v1/items?sort=asc&x=%2F", "/api/v1/items", "api.example.com:8080", 11, false,
			h1Pair{"Host", "api.example.com:8080"}, h1Pair{"Content-Length", "11"}, h1Pair{"Content-Type", "text/plain"}),
		ok("next request pipelined", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", "GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET", "/a", "/a", "h", 0, false, h1Pair{"Host", "h"}),
		ok("bare LF", "GET /a HTTP/1.1\nHost: h\nX-A: 1\n\n", "", "GET", "/a", "/a", "h", 0, false,
			h1Pair{"Host", "h"}, h1Pair{"X-A", "1"}),
		ok("mixed line ends", "GET /a HTTP/1.1\r\nHost: h\n\r\n", "", "GET", "/a", "/a", "h", 0, false,
			h1Pair{"Host", "h"}),
		ok("OWS, case, empty and obs-text values", "DELETE /x HTTP/1.1\r\nhOsT: \t h \t\r\nCONTENT-length: 0007\r\n"+
			"X-Empty:\r\nX-Obs: caf\xc3\xa9\r\nX-Inner: a  b\r\n\r\n", "1234567",
			"DELETE", "/x", "/x", "h", 7, false,
			h1Pair{"hOsT", "h"}, h1Pair{"CONTENT-length", "0007"}, h1Pair{"X-Empty", ""},
			h1Pair{"X-Obs", "caf\xc3\xa9"}, h1Pair{"X-Inner", "a  b"}),
		ok("connection close", get+"Connection: keep-alive, Close\r\n\r\n", "", "GET", "/", "/", "h", 0, true,
			h1Pair{"Host", "h"}, h1Pair{"Connection", "keep-alive, Close"}),
		ok("connection close in second field", get+"Connection: keep-alive\r\nconnection: close\r\n\r\n", "",
			"GET", "/", "/", "h", 0, true,
			h1Pair{"Host", "h"}, h1Pair{"Connection", "keep-alive"}, h1Pair{"connection", "close"}),
		ok("connection keep-alive and empty tokens", get+"Connection: , Keep-Alive ,\r\n\r\n", "", "GET", "/", "/", "h", 0, false,
			h1Pair{"Host", "h"}, h1Pair{"Connection", ", Keep-Alive ,"}),
		ok("query may hold what the path may not", "GET /p?a=/../b&c=%zz&d=\\&e=//&f=? HTTP/1.1\r\nHost: h\r\n\r\n", "",
			"GET", "/p?a=/../b&c=%zz&d=\\&e=//&f=?", "/p", "h", 0, false, h1Pair{"Host", "h"}),
		ok("empty query", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", "", "GET", "/p?", "/p", "h", 0, false, h1Pair{"Host", "h"}),
		ok("token method and path characters", "M-SEARCH /a/b.c/~d_e-f;g=h,i:j@k!$&'()*+/x./ HTTP/1.1\r\nHost: h\r\n\r\n", "",
			"M-SEARCH", "/a/b.c/~d_e-f;g=h,i:j@k!$&'()*+/x./", "/a/b.c/~d_e-f;g=h,i:j@k!$&'()*+/x./", "h", 0, false,
			h1Pair{"Host", "h"}),
		ok("largest content length", get+"Content-Length: 1099511627776\r\n\r\n", "", "GET", "/", "/", "h", 1<<40, false,
			h1Pair{"Host", "h"}, h1Pair{"Content-Length", "1099511627776"}),
		ok("content length zero", "PUT /z HTTP/1.1\r\nContent-Length: 0\r\nHost: h\r\n\r\n", "", "PUT", "/z", "/z", "h", 0, false,
			h1Pair{"Content-Length", "0"}, h1Pair{"Host", "h"}),
		ok("64 fields", get+fields63+"\r\n", "", "GET", "/", "/", "h", 0, false, append([]h1Pair{{"Host", "h"}}, pairs63...)...),
		ok("proxy and hop fields are parsed", get+"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n\r\n", "",
			"GET", "/", "/", "h", 0, false,
			h1Pair{"Host", "h"}, h1Pair{"Keep-Alive", "timeout=5"}, h1Pair{"TE", "trailers"}, h1Pair{"Proxy-Connection", "x"}),

		more("empty", ""),
		more("method only", "G"),
		more("request line without end", "GET / HTTP/1.1"),
		more("request line with CR only", "GET / HTTP/1.1\r"),
		more("request line only", "GET / HTTP/1.1\r\n"),
		more("field without end", "GET / HTTP/1.1\r\nHost: h"),
		more("no empty line", "GET / HTTP/1.1\r\nHost: h\r\n"),
		more("empty line without LF", "GET / HTTP/1.1\r\nHost: h\r\n\r"),
		more("HTTP/1.0 line not ended", "GET / HTTP/1.0"),

		// version
		other("HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n"),
		other("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
		other("HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n"),
		other("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n"),
		other("space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n"),
		other("no version", "GET /\r\nHost: h\r\n\r\n"),
		// request line
		other("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("method not a token", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("empty line first", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("CR in request line", "GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"),
		// framing and protocol switches
		other("Transfer-Encoding chunked", get+"Transfer-Encoding: chunked\r\n\r\n"),
		other("Transfer-Encoding identity", get+"transfer-encoding: identity\r\n\r\n"),
		other("Transfer-Encoding and Content-Length", get+"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
		other("Expect", get+"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
		other("Upgrade", get+"Upgrade: websocket\r\n\r\n"),
		other("Connection upgrade", get+"Connection: Upgrade\r\n\r\n"),
		other("Connection names a field", get+"Connection: close, X-Foo\r\n\r\n"),
		other("Connection te", get+"Connection: te\r\n\r\n"),
		other("Connection token with parameter", get+"Connection: keep-alive;x\r\n\r\n"),
		// Host
		other("no Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
		other("two Hosts", get+"host: h\r\n\r\n"),
		other("two different Hosts", get+"Host: evil\r\n\r\n"),
		other("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
		other("blank Host", "GET / HTTP/1.1\r\nHost:  \t \r\n\r\n"),
		// Content-Length
		other("two equal Content-Lengths", get+"Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
		other("two Content-Lengths", get+"Content-Length: 5\r\ncontent-length: 6\r\n\r\n"),
		other("Content-Length list", get+"Content-Length: 5, 5\r\n\r\n"),
		other("Content-Length letters", get+"Content-Length: abc\r\n\r\n"),
		other("Content-Length negative", get+"Content-Length: -1\r\n\r\n"),
		other("Content-Length plus", get+"Content-Length: +1\r\n\r\n"),
		other("Content-Length inner space", get+"Content-Length: 1 2\r\n\r\n"),
		other("Content-Length empty", get+"Content-Length:\r\n\r\n"),
		other("Content-Length hex", get+"Content-Length: 0x10\r\n\r\n"),
		other("Content-Length 14 digits", get+"Content-Length: 00000000000001\r\n\r\n"),
		other("Content-Length too large", get+"Content-Length: 1099511627777\r\n\r\n"),
		// request target
		other("absolute-form", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("authority-form", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"),
		other("relative path", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("query only", "GET ?q HTTP/1.1\r\nHost: h\r\n\r\n"),
		// paths that need normalizing or decoding
		other("percent in path", "GET /%41 HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("backslash in path", "GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("fragment in path", "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("fragment in query", "GET /a?b#f HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("leading double slash", "GET //a HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("inner double slash", "GET /a//b HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("trailing double slash", "GET /a// HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot segment", "GET /. HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot segment first", "GET /./a HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot segment last", "GET /a/. HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot-dot segment", "GET /a/../b HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot-dot before query", "GET /a/..?x HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("dot file", "GET /.env HTTP/1.1\r\nHost: h\r\n\r\n"),
		// invalid bytes
		other("NUL in path", "GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("DEL in path", "GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("UTF-8 in path", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("control in query", "GET /a?b\x01 HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("tab in query", "GET /a?b\tc HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("DEL in query", "GET /a?b\x7f HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("UTF-8 in query", "GET /a?b=\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
		other("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
		other("empty field name", get+": v\r\n\r\n"),
		other("no colon", get+"NoColon\r\n\r\n"),
		other("field name not a token", get+"X(Y): 1\r\n\r\n"),
		other("obs-text in field name", get+"X\xc3\xa9: 1\r\n\r\n"),
		other("NUL in value", get+"X: a\x00b\r\n\r\n"),
		other("CR in value", get+"X: a\rb\r\n\r\n"),
		other("CR at value end", get+"X: a\r\r\n\r\n"),
		other("DEL in value", get+"X: a\x7fb\r\n\r\n"),
		other("control in value", get+"X: a\x01b\r\n\r\n"),
		other("CR line ends the head", get+"\r\r\n"),
		// limits and obsolete syntax
		other("65 fields", get+fields64+"\r\n"),
		other("obs-fold", get+"X-A: 1\r\n  continued\r\n\r\n"),
		other("obs-fold with tab", get+"X-A: 1\r\n\tcontinued\r\n\r\n"),
		other("space before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
	}
}

func TestParseRequestHead(t *testing.T) {
	for _, c := range reqCases() {
		t.Run(c.name, func(t *testing.T) {
			buf := []byte(c.head + c.body)
			var h reqHead
			n, st := parseRequestHead(buf, &h)
			if st != c.st {
				t.Fatalf("parseRequestHead(%q) = %d, %v; want %v", buf, n, st, c.st)
			}
			if st != h1OK {
				if n != 0 {
					t.Errorf("n = %d with %v, want 0", n, st)
				}
				return
			}
			if n != len(c.head) {
				t.Errorf("n = %d, want %d", n, len(c.head))
			}
			if string(h.method) != c.method || string(h.uri) != c.uri || string(h.path) != c.path ||
				string(h.host) != c.host {
				t.Errorf("method %q uri %q path %q host %q; want %q %q %q %q",
					h.method, h.uri, h.path, h.host, c.method, c.uri, c.path, c.host)
			}
			if h.contentLength != c.cl || h.close != c.close {
				t.Errorf("contentLength %d close %v; want %d %v", h.contentLength, h.close, c.cl, c.close)
			}
			if got := h1Fields(h.fields); !h1FieldsEqual(got, c.fields) {
				t.Errorf("fields\n%q\nwant\n%q", got, c.fields)
			}
			// The results point into buf: nothing is copied.
			for _, s := range [][]byte{h.method, h.uri, h.path, h.host} {
				if !within(buf, s) {
					t.Errorf("%q is not a slice of the buffer", s)
				}
			}
		})
	}
}

// within reports whether s is a slice of buf's memory.
func within(buf, s []byte) bool {
	if len(s) == 0 {
		return true
	}
	for i := range buf {
		if &buf[i] == &s[0] {
			return i+len(s) <= len(buf)
		}
	}
	return false
}

// TestParseRequestHeadPrefixes feeds each head byte by byte, as the loop may read
// it: every strict prefix of a head is incomplete, and a decision, once made,
// holds for every longer buffer (so a request is never forwarded or handed over
// depending on how its bytes arrived).
func TestParseRequestHeadPrefixes(t *testing.T) {
	for _, c := range reqCases() {
		if c.st == h1More {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			buf := []byte(c.head + c.body)
			var h reqHead
			wantN, wantSt := parseRequestHead(buf, &h)
			decided := -1
			for k := 0; k <= len(buf); k++ {
				// A copy of exactly k bytes, so that nothing past the prefix can be read.
				p := append([]byte(nil), buf[:k]...)
				n, st := parseRequestHead(p, &h)
				switch {
				case decided < 0 && st == h1More:
				case decided < 0:
					decided = k
					fallthrough
				default:
					if st != wantSt || n != wantN {
						t.Fatalf("prefix %q: %d, %v; the whole buffer gives %d, %v", p, n, st, wantN, wantSt)
					}
				}
			}
			if wantSt == h1OK && decided != wantN {
				t.Errorf("accepted after %d bytes, the head is %d", decided, wantN)
			}
		})
	}
}

func FuzzParseRequestHead(f *testing.F) {
	for _, c := range reqCases() {
		f.Add([]byte(c.head + c.body))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		checkRequestHead(t, buf)
	})
}

// checkRequestHead holds an accepted head to net/http's reading of it.
func checkRequestHead(t *testing.T, buf []byte) {
	var h reqHead
	n, st := parseRequestHead(buf, &h)
	if st != h1OK {
		if n != 0 {
			t.Fatalf("%q: n = %d with %v", buf, n, st)
		}
		return
	}
	if n <= 0 || n > len(buf) {
		t.Fatalf("%q: n = %d out of range", buf, n)
	}
	head := buf[:n:n]
	if !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\n\r\n")) {
		t.Fatalf("%q: head %q does not end with an empty line", buf, head)
	}
	var h2 reqHead
	if n2, st2 := parseRequestHead(head, &h2); n2 != n || st2 != h1OK {
		t.Fatalf("%q: the head alone gives %d, %v", head, n2, st2)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("accepted %q, net/http: %v", head, err)
	}
	if req.Method != string(h.method) || req.RequestURI != string(h.uri) || req.Host != string(h.host) ||
		req.ContentLength != int64(h.contentLength) || req.Close != h.close {
		t.Fatalf("%q:\nparsed method %q uri %q host %q length %d close %v\nnet/http      %q %q %q %d %v",
			head, h.method, h.uri, h.host, h.contentLength, h.close,
			req.Method, req.RequestURI, req.Host, req.ContentLength, req.Close)
	}
	if req.URL.Path != string(h.path) {
		t.Fatalf("%q: path %q, net/http %q", head, h.path, req.URL.Path)
	}
	for _, f := range h.fields {
		if eqFold(f.name, "host") {
			continue // net/http moves it to req.Host
		}
		if !hasValue(req.Header, string(f.name), string(f.value)) {
			t.Fatalf("%q: field %q: %q, net/http has %q", head, f.name, f.value,
				req.Header[textproto.CanonicalMIMEHeaderKey(string(f.name))])
		}
	}
}

func hasValue(h http.Header, name, value string) bool {
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(name)] {
		if v == value {
			return true
		}
	}
	return false
}

type respCase struct {
	name    string
	head    string
	st      h1Status
	status  int
	reason  string
	cl      int64
	chunked bool
	close   bool
	fields  []h1Pair
}

func respCases() []respCase {
	fields63, pairs63 := manyFields(63)
	fields64, _ := manyFields(64)
	ok := func(name, head string, status int, reason string, cl int64, chunked, close bool, fields ...h1Pair) respCase {
		return respCase{name: name, head: head, st: h1OK, status: status, reason: reason, cl: cl,
			chunked: chunked, close: close, fields: fields}
	}
	other := func(name, head string) respCase { return respCase{name: name, head: head, st: h1Other} }
	const ok200 = "HTTP/1.1 200 OK\r\n"
	return []respCase{
		ok("content length", ok200+"Content-Length: 5\r\nContent-Type: text/plain\r\n\r\n", 200, "OK", 5, false, false,
			h1Pair{"Content-Length", "5"}, h1Pair{"Content-Type", "text/plain"}),
		ok("chunked", ok200+"Transfer-Encoding: chunked\r\n\r\n", 200, "OK", -1, true, false,
			h1Pair{"Transfer-Encoding", "chunked"}),
		ok("chunked wins over length", ok200+"Content-Length: 10\r\ntransfer-encoding:  Chunked \r\n\r\n", 200, "OK", -1, true, false,
			h1Pair{"Content-Length", "10"}, h1Pair{"transfer-encoding", "Chunked"}),
		ok("until close", ok200+"Server: x\r\n\r\n", 200, "OK", -1, false, false, h1Pair{"Server", "x"}),
		ok("no reason", "HTTP/1.1 204\r\n\r\n", 204, "", -1, false, false),
		ok("empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 404, "", 0, false, false,
			h1Pair{"Content-Length", "0"}),
		ok("reason with spaces", "HTTP/1.1 500 Internal  Server Error \r\nContent-Length: 0\r\n\r\n", 500,
			"Internal  Server Error ", 0, false, false, h1Pair{"Content-Length", "0"}),
		ok("obs-text reason", "HTTP/1.1 200 caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", 200, "caf\xc3\xa9", 0, false, false,
			h1Pair{"Content-Length", "0"}),
		ok("interim", "HTTP/1.1 100 Continue\r\n\r\n", 100, "Continue", -1, false, false),
		ok("early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 103, "Early Hints", -1, false, false,
			h1Pair{"Link", "</a.css>; rel=preload"}),
		ok("status 999", "HTTP/1.1 999 X\r\nContent-Length: 1\r\n\r\n", 999, "X", 1, false, false,
			h1Pair{"Content-Length", "1"}),
		ok("bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\n", 200, "OK", 2, false, false, h1Pair{"Content-Length", "2"}),
		ok("equal Content-Lengths", ok200+"Content-Length: 5\r\ncontent-length: 5\r\n\r\n", 200, "OK", 5, false, false,
			h1Pair{"Content-Length", "5"}, h1Pair{"content-length", "5"}),
		ok("HTTP/1.1 close", ok200+"Connection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", 200, "OK", 0, false, true,
			h1Pair{"Connection", "keep-alive, close"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.1 keep-alive", ok200+"Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 200, "OK", 0, false, false,
			h1Pair{"Connection", "Keep-Alive"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.1 other tokens", ok200+"Connection: x-foo\r\nContent-Length: 0\r\n\r\n", 200, "OK", 0, false, false,
			h1Pair{"Connection", "x-foo"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "OK", 0, false, true,
			h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 200, "OK", 0, false, false,
			h1Pair{"Connection", "Keep-Alive"}, h1Pair{"Content-Length", "0"}),
		// RFC 9112 §9.3: close wins, wherever it is.
		ok("HTTP/1.0 close, keep-alive", "HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n",
			200, "OK", 0, false, true, h1Pair{"Connection", "close, keep-alive"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.0 close then keep-alive", "HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			200, "OK", 0, false, true,
			h1Pair{"Connection", "close"}, h1Pair{"Connection", "keep-alive"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.0 keep-alive then close", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			200, "OK", 0, false, true,
			h1Pair{"Connection", "keep-alive"}, h1Pair{"Connection", "close"}, h1Pair{"Content-Length", "0"}),
		ok("HTTP/1.0 until close", "HTTP/1.0 200 OK\r\n\r\n", 200, "OK", -1, false, true),
		ok("64 fields", ok200+fields63+"Content-Length: 0\r\n\r\n", 200, "OK", 0, false, false,
			append(pairs63, h1Pair{"Content-Length", "0"})...),

		{name: "empty", head: "", st: h1More},
		{name: "status line only", head: "HTTP/1.1 200 OK\r\n", st: h1More},
		{name: "no empty line", head: ok200 + "Content-Length: 0\r\n", st: h1More},
		{name: "partial field", head: ok200 + "Content-Len", st: h1More},

		other("short code", "HTTP/1.1 20 OK\r\n\r\n"),
		other("long code", "HTTP/1.1 2000 OK\r\n\r\n"),
		other("code below 100", "HTTP/1.1 099 Low\r\n\r\n"),
		other("code not digits", "HTTP/1.1 2x0 OK\r\n\r\n"),
		other("HTTP/2", "HTTP/2 200 OK\r\n\r\n"),
		other("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
		other("lower-case version", "http/1.1 200 OK\r\n\r\n"),
		other("two spaces", "HTTP/1.1  200 OK\r\n\r\n"),
		other("tab after code", "HTTP/1.1 200\tOK\r\n\r\n"),
		other("NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n"),
		other("CR in reason", "HTTP/1.1 200 OK\r\r\n\r\n"),
		other("not HTTP", "ICY 200 OK\r\n\r\n"),
		other("empty line first", "\r\nHTTP/1.1 200 OK\r\n\r\n"),
		other("two Content-Lengths", ok200+"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
		// RFC 9110 §8.6 lets a recipient merge equal decimal values, but then it must
		// send one field; passing on both makes net/http (and others) refuse it.
		other("equal values, different digits", ok200+"Content-Length: 5\r\nContent-Length: 05\r\n\r\n"),
		other("Content-Length letters", ok200+"Content-Length: abc\r\n\r\n"),
		other("Content-Length empty", ok200+"Content-Length:\r\n\r\n"),
		other("Content-Length negative", ok200+"Content-Length: -1\r\n\r\n"),
		other("Content-Length list", ok200+"Content-Length: 1, 1\r\n\r\n"),
		other("Content-Length too large", ok200+"Content-Length: 99999999999999\r\n\r\n"),
		other("Transfer-Encoding gzip", ok200+"Transfer-Encoding: gzip\r\n\r\n"),
		other("Transfer-Encoding gzip, chunked", ok200+"Transfer-Encoding: gzip, chunked\r\n\r\n"),
		other("Transfer-Encoding chunked, chunked", ok200+"Transfer-Encoding: chunked, chunked\r\n\r\n"),
		other("two Transfer-Encodings", ok200+"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
		other("empty Transfer-Encoding", ok200+"Transfer-Encoding:\r\n\r\n"),
		// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
		// framing (net/http ignores the field and reads to the close).
		other("HTTP/1.0 chunked", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
		other("HTTP/1.0 chunked keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"),
		other("space before colon", ok200+"Content-Length : 0\r\n\r\n"),
		other("empty field name", ok200+": x\r\n\r\n"),
		other("no colon", ok200+"NoColon\r\n\r\n"),
		other("NUL in value", ok200+"X: a\x00b\r\n\r\n"),
		other("obs-fold", ok200+"X: a\r\n b\r\n\r\n"),
		other("65 fields", ok200+fields64+"Content-Length: 0\r\n\r\n"),
	}
}

func TestParseResponseHead(t *testing.T) {
	for _, c := range respCases() {
		t.Run(c.name, func(t *testing.T) {
			buf := []byte(c.head + "body")
			if c.st == h1More {
				buf = []byte(c.head)
			}
			var h respHead
			n, st := parseResponseHead(buf, &h)
			if st != c.st {
				t.Fatalf("parseResponseHead(%q) = %d, %v; want %v", buf, n, st, c.st)
			}
			if st == h1OK {
				if n != len(c.head) {
					t.Errorf("n = %d, want %d", n, len(c.head))
				}
				if h.status != c.status || string(h.reason) != c.reason || h.contentLength != c.cl ||
					h.chunked != c.chunked || h.close != c.close {
					t.Errorf("status %d reason %q length %d chunked %v close %v; want %d %q %d %v %v",
						h.status, h.reason, h.contentLength, h.chunked, h.close,
						c.status, c.reason, c.cl, c.chunked, c.close)
				}
				if got := h1Fields(h.fields); !h1FieldsEqual(got, c.fields) {
					t.Errorf("fields\n%q\nwant\n%q", got, c.fields)
				}
			}
			// Byte by byte: incomplete until the decision, which then holds.
			decided := false
			for k := 0; k <= len(buf); k++ {
				p := append([]byte(nil), buf[:k]...)
				n2, st2 := parseResponseHead(p, &h)
				if !decided && st2 == h1More {
					continue
				}
				decided = true
				if n2 != n || st2 != st {
					t.Fatalf("prefix %q: %d, %v; the whole gives %d, %v", p, n2, st2, n, st)
				}
			}
			checkResponseHead(t, buf)
		})
	}
}

func FuzzParseResponseHead(f *testing.F) {
	for _, c := range respCases() {
		f.Add([]byte(c.head))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		checkResponseHead(t, buf)
	})
}

// bodyAllowed is net/http's and RFC 9112 §6.3's rule for the statuses that have
// a body in answer to GET.
func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// checkResponseHead holds an accepted response head to net/http's reading of it,
// where RFC 9112 gives both the same rules: status, framing of responses that
// have a body, and persistence where the body is delimited.
func checkResponseHead(t *testing.T, buf []byte) {
	var h respHead
	n, st := parseResponseHead(buf, &h)
	if st != h1OK {
		if n != 0 {
			t.Fatalf("%q: n = %d with %v", buf, n, st)
		}
		return
	}
	if n <= 0 || n > len(buf) {
		t.Fatalf("%q: n = %d out of range", buf, n)
	}
	head := buf[:n:n]
	if !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\n\r\n")) {
		t.Fatalf("%q: head %q does not end with an empty line", buf, head)
	}
	if h.status < 100 || h.status > 999 {
		t.Fatalf("%q: status %d", head, h.status)
	}
	if h.chunked && h.contentLength != -1 {
		t.Fatalf("%q: chunked with length %d", head, h.contentLength)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	if err != nil {
		t.Fatalf("accepted %q, net/http: %v", head, err)
	}
	if resp.StatusCode != h.status {
		t.Fatalf("%q: status %d, net/http %d", head, h.status, resp.StatusCode)
	}
	if reason := strings.TrimPrefix(resp.Status[3:], " "); reason != string(h.reason) {
		t.Fatalf("%q: reason %q, net/http %q", head, h.reason, reason)
	}
	netChunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
	if bodyAllowed(h.status) {
		if h.chunked != netChunked || !h.chunked && h.contentLength != resp.ContentLength {
			t.Fatalf("%q: chunked %v length %d, net/http %q %d", head, h.chunked, h.contentLength,
				resp.TransferEncoding, resp.ContentLength)
		}
	}
	// net/http also marks a body read to the close as closing; the loop closes
	// both connections then whatever h.close says.
	if delimited := h.chunked || h.contentLength >= 0 || !bodyAllowed(h.status); delimited && h.close != resp.Close {
		t.Fatalf("%q: close %v, net/http %v", head, h.close, resp.Close)
	}
	for _, f := range h.fields {
		switch {
		case eqFold(f.name, "content-length"), eqFold(f.name, "transfer-encoding"), eqFold(f.name, "connection"),
			eqFold(f.name, "trailer"):
			continue // net/http consumes these
		}
		if !hasValue(resp.Header, string(f.name), string(f.value)) {
			t.Fatalf("%q: field %q: %q, net/http has %q", head, f.name, f.value,
				resp.Header[textproto.CanonicalMIMEHeaderKey(string(f.name))])
		}
	}
}

// encodeChunked encodes data with net/http's chunked writer in writes of random
// sizes, then the last chunk, the trailer lines and the final CRLF.
func encodeChunked(t testing.TB, data []byte, r *rand.Rand, trailer string) []byte {
	var buf bytes.Buffer
	w := httputil.NewChunkedWriter(&buf)
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 1+r.IntN(1+r.IntN(3000)))
		if _, err := w.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil { // "0\r\n"
		t.Fatal(err)
	}
	buf.WriteString(trailer)
	buf.WriteString("\r\n")
	return buf.Bytes()
}

// randomCuts splits n bytes into pieces of random lengths (some empty).
func randomCuts(n int, r *rand.Rand) []int {
	var cuts []int
	for n > 0 {
		k := 0
		switch r.IntN(4) {
		case 0:
			k = 1
		case 1:
			k = r.IntN(8)
		case 2:
			k = r.IntN(200)
		default:
			k = r.IntN(n + 1)
		}
		k = min(k, n)
		cuts = append(cuts, k)
		n -= k
	}
	return cuts
}

// checkScanEnd feeds stream (a chunked body of end bytes, then whatever follows
// it) to a scanner in random pieces, as the loop reads it: the scanner must take
// every byte up to the end and none after, and report the end exactly there.
func checkScanEnd(t *testing.T, stream []byte, end int, r *rand.Rand) {
	t.Helper()
	var s chunkScanner
	pos := 0
	rest := stream
	for _, k := range randomCuts(len(stream), r) {
		piece := rest[:k]
		rest = rest[k:]
		n, done, err := s.scan(piece)
		if err != nil {
			t.Fatalf("error at %d of %q: %v", pos, stream, err)
		}
		if n < 0 || n > len(piece) || !done && n != len(piece) {
			t.Fatalf("piece of %d at %d: consumed %d, done %v", len(piece), pos, n, done)
		}
		pos += n
		if pos > end {
			t.Fatalf("consumed %d bytes of a body of %d: %q", pos, end, stream)
		}
		if done {
			if pos != end {
				t.Fatalf("done after %d bytes of a body of %d: %q", pos, end, stream)
			}
			// The rest is the next response's; the scanner stays done.
			if n2, done2, err2 := s.scan(stream[end:]); n2 != 0 || !done2 || err2 != nil {
				t.Fatalf("after the end: %d, %v, %v", n2, done2, err2)
			}
			return
		}
		if pos == end {
			t.Fatalf("all %d bytes of the body consumed, not done: %q", end, stream)
		}
	}
	t.Fatalf("not done after %d bytes of %d: %q", pos, end, stream)
}

func TestChunkScanner(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	next := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	trailers := []string{"", "X-Sum: abc\r\n", "A: 1\r\nB-Long: " + strings.Repeat("x", 5000) + "\r\n"}
	for i := range 400 {
		data := make([]byte, r.IntN(1+r.IntN(20000)))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		enc := encodeChunked(t, data, r, trailers[i%len(trailers)])
		// The encoding is net/http's to read back.
		if got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(enc))); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("encoding does not decode: %v", err)
		}
		extra := [][]byte{nil, []byte(next), data[:min(len(data), 10)], []byte("0\r\n\r\n")}[i%4]
		checkScanEnd(t, append(enc, extra...), len(enc), r)
	}

	valid := []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\n",
		"5;name=value\r\nhello\r\n0;x\r\n\r\n",
		"5 ; a=\"b;c\"\r\nhello\r\n0\r\n\r\n",
		"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
		"00000000000000f\r\n0123456789abcde\r\n000\r\n\r\n", // 15 digits
		"4\r\n\r\n\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n",        // data that looks like framing
		"3\r\n0\r\n\r\n0\r\nX: 0\r\n\r\n",
	}
	for _, v := range valid {
		for range 20 {
			checkScanEnd(t, []byte(v+next), len(v), r)
		}
	}

	malformed := []string{
		"g\r\n",
		"5x\r\nhello\r\n",
		"\r\n",
		";x\r\n",
		" 5\r\nhello\r\n",
		"-5\r\nhello\r\n",
		"0x5\r\nhello\r\n",
		"5\r\nhelloX\r\n0\r\n\r\n",  // missing CRLF after the data
		"5\r\nhello\rX\n0\r\n\r\n",  // CR not followed by LF
		"5\r\nhello world\r\n",      // more data than the size
		"3\r\nhello\r\n0\r\n\r\n",   // less
		"0000000000000001\r\nx\r\n", // 16 digits
		"10000000000000000\r\n",     // over-long size
		"1" + strings.Repeat(";", 5000) + "\r\nx\r\n0\r\n\r\n",
		"0\r\nX: " + strings.Repeat("y", 9000) + "\r\n\r\n",
	}
	for _, m := range malformed {
		for _, whole := range []bool{true, false} {
			var s chunkScanner
			var err error
			pos := 0
			if whole {
				_, _, err = s.scan([]byte(m))
			} else {
				for ; pos < len(m) && err == nil; pos++ {
					_, _, err = s.scan([]byte{m[pos]})
				}
			}
			if err == nil {
				t.Errorf("%q (whole %v): no error", m, whole)
			}
		}
	}
}

func FuzzChunkScanner(f *testing.F) {
	f.Add([]byte("hello, world"), uint64(1))
	f.Add([]byte{}, uint64(2))
	f.Add([]byte("5\r\nhello\r\n0\r\nX: y\r\n\r\nHTTP/1.1 200 OK\r\n"), uint64(3))
	f.Add([]byte("5;e\r\nhello\n0\r\n\r\n"), uint64(4))
	f.Add([]byte("0\r\n\r\r\n"), uint64(5))
	f.Add([]byte(strings.Repeat("a", 300)), uint64(6))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 7))
		trailer := ""
		if seed&1 != 0 {
			trailer = "X-T: " + strconv.Itoa(len(data)) + "\r\n"
		}
		enc := encodeChunked(t, data, r, trailer)
		stream := append(enc, data...)
		checkScanEnd(t, stream, len(enc), r)
		if end, ok := netChunkedEnd(stream); !ok || end != len(enc) {
			t.Fatalf("net/http: end %d, %v; encoded %d", end, ok, len(enc))
		}
		checkScanRaw(t, data, r)
	})
}

// checkScanRaw scans arbitrary bytes as a chunked body: the outcome may not
// depend on how the bytes are split, and where net/http reads a chunked body, the
// scanner finds the same end or rejects an over-long chunk size.
func checkScanRaw(t *testing.T, data []byte, r *rand.Rand) {
	var whole chunkScanner
	n1, done1, err1 := whole.scan(data)
	if err1 == nil && (n1 < 0 || n1 > len(data) || !done1 && n1 != len(data)) {
		t.Fatalf("%q: consumed %d, done %v", data, n1, done1)
	}

	var split chunkScanner
	var err2 error
	n2, done2, rest := 0, false, data
	for _, k := range randomCuts(len(data), r) {
		var n int
		n, done2, err2 = split.scan(rest[:k])
		rest = rest[k:]
		if err2 != nil || done2 {
			n2 += n
			break
		}
		n2 += n
	}
	if (err1 != nil) != (err2 != nil) || err1 == nil && (n1 != n2 || done1 != done2) {
		t.Fatalf("%q: whole %d, %v, %v; split %d, %v, %v", data, n1, done1, err1, n2, done2, err2)
	}

	end, ok := netChunkedEnd(data)
	if !ok {
		return
	}
	if err1 != nil {
		// Stricter than net/http only on a size of more than 15 digits.
		var s chunkScanner
		at := 0
		for ; at < len(data); at++ {
			if _, _, err := s.scan(data[at : at+1]); err != nil {
				break
			}
		}
		if at == len(data) {
			t.Fatalf("%q: fails whole (%v), not byte by byte", data, err1)
		}
		if at < 15 || !allHex(data[at-15:at+1]) {
			t.Fatalf("%q: net/http reads a body of %d bytes, the scanner fails at %d: %v", data, end, at, err1)
		}
		return
	}
	if !done1 || n1 != end {
		t.Fatalf("%q: net/http reads a body of %d bytes, the scanner %d (done %v)", data, end, n1, done1)
	}
}

func allHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// netChunkedEnd reports how many bytes of b net/http's client reads as a chunked
// response body, trailers included; ok is false if it rejects them.
func netChunkedEnd(b []byte) (end int, ok bool) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	rd := bytes.NewReader(append([]byte(head), b...))
	br := bufio.NewReader(rd)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, false
	}
	return len(b) - rd.Len() - br.Buffered(), true
}

// headLines splits a serialized head into its start line and fields, checking
// that every line ends with CRLF.
func headLines(t *testing.T, b []byte) (start string, fields []h1Pair) {
	t.Helper()
	s := string(b)
	if !strings.HasSuffix(s, "\r\n\r\n") {
		t.Fatalf("head %q does not end with CRLF CRLF", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\r\n\r\n"), "\r\n")
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ": ")
		if !ok || strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bad field line %q in %q", l, s)
		}
		fields = append(fields, h1Pair{name, value})
	}
	return lines[0], fields
}

func valuesOf(fields []h1Pair, name string) []string {
	var vs []string
	for _, f := range fields {
		if strings.EqualFold(f[0], name) {
			vs = append(vs, f[1])
		}
	}
	return vs
}

var hopNames = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
	"Proxy-Authenticate", "TE", "Trailer", "Upgrade"}

func TestAppendUpstreamRequest(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	type tc struct {
		name   string
		head   string
		body   string
		extra  []h1Pair // fields the parser would refuse (the serializer must still drop them)
		strip  int
		ip     string
		proto  string
		uri    string // upstream request target
		xff    string
		fwd    string
		keep   []h1Pair // client fields passed on, in order
		length int64
	}
	all := "Host: api.example.com\r\n" +
		"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Authenticate: Basic\r\nTE: trailers\r\nTrailer: X-Sum\r\n" +
		"X-Wolke-Identity: admin\r\nx_wolke_identity: admin\r\nX_WOLKE-identity: admin\r\n" +
		"X-Wolke-Identity-Note: kept\r\nX-Wolke-Identit: kept\r\n" +
		"X-Request-Id: client-id\r\nTraceparent: 00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n" +
		"Accept: */*\r\nCookie: a=b; c=d\r\nContent-Length: 5\r\n"
	cases := []tc{
		{name: "everything", head: "POST /api/users?x=1&y=%20 HTTP/1.1\r\n" + all + "\r\n", body: "hello",
			extra: []h1Pair{{"Upgrade", "websocket"}, {"upgrade", "h2c"}},
			strip: 4, ip: "10.0.0.1", proto: "http", uri: "/users?x=1&y=%20",
			xff: "10.0.0.1", fwd: `for=10.0.0.1;host="api.example.com";proto=http`,
			keep: []h1Pair{{"Host", "api.example.com"}, {"X-Wolke-Identity-Note", "kept"}, {"X-Wolke-Identit", "kept"},
				{"Accept", "*/*"}, {"Cookie", "a=b; c=d"}, {"Content-Length", "5"}},
			length: 5},
		{name: "prior forwarding fields", head: "GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n" +
			"Forwarded: for=203.0.113.7;proto=https\r\n\r\n",
			ip: "10.0.0.1", proto: "https", uri: "/a",
			xff: "203.0.113.7, 10.0.0.1", fwd: `for=203.0.113.7;proto=https, for=10.0.0.1;host="h";proto=https`,
			keep: []h1Pair{{"Host", "h"}}},
		{name: "two prior fields each", head: "GET /a HTTP/1.1\r\nx-forwarded-for: 1.1.1.1\r\nHost: h\r\n" +
			"X-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nforwarded: for=a\r\nForwarded: for=b\r\n\r\n",
			ip: "10.0.0.1", proto: "http", uri: "/a",
			xff: "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1", fwd: `for=a, for=b, for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
		// An empty prior value adds no empty list element (as the fasthttp path does).
		{name: "empty prior fields", head: "GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:\r\nForwarded: \r\n\r\n",
			ip: "10.0.0.1", proto: "http", uri: "/a",
			xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
		{name: "IPv6 client", head: "GET /a HTTP/1.1\r\nHost: h:8080\r\n\r\n",
			ip: "::1", proto: "http", uri: "/a",
			xff: "::1", fwd: `for="[::1]";host="h:8080";proto=http`, keep: []h1Pair{{"Host", "h:8080"}}},
		{name: "IPv6 full", head: "GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
			ip: "2001:db8::5", proto: "http", uri: "/a",
			xff: "2001:db8::5", fwd: `for="[2001:db8::5]";host="h";proto=http`, keep: []h1Pair{{"Host", "h"}}},
		{name: "host quoted", head: "GET /a HTTP/1.1\r\nHost: a\"b\\c\r\n\r\n",
			ip: "10.0.0.1", proto: "http", uri: "/a",
			xff: "10.0.0.1", fwd: `for=10.0.0.1;host="a\"b\\c";proto=http`, keep: []h1Pair{{"Host", "a\"b\\c"}}},
		{name: "no strip", head: "GET /api/x?q HTTP/1.1\r\nHost: h\r\n\r\n", ip: "10.0.0.1", proto: "http",
			uri: "/api/x?q", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`, keep: []h1Pair{{"Host", "h"}}},
		{name: "strip to root", head: "GET /api HTTP/1.1\r\nHost: h\r\n\r\n", strip: 4, ip: "10.0.0.1", proto: "http",
			uri: "/", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`, keep: []h1Pair{{"Host", "h"}}},
		{name: "strip to root keeps the query", head: "GET /api?q=1&r HTTP/1.1\r\nHost: h\r\n\r\n", strip: 4,
			ip: "10.0.0.1", proto: "http", uri: "/?q=1&r", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
		{name: "strip to root with empty query", head: "GET /api? HTTP/1.1\r\nHost: h\r\n\r\n", strip: 4,
			ip: "10.0.0.1", proto: "http", uri: "/?", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
		{name: "strip trailing slash", head: "GET /api/ HTTP/1.1\r\nHost: h\r\n\r\n", strip: 4, ip: "10.0.0.1", proto: "http",
			uri: "/", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`, keep: []h1Pair{{"Host", "h"}}},
		{name: "strip prefix with slash", head: "GET /api/v1/x?y HTTP/1.1\r\nHost: h\r\n\r\n", strip: 5,
			ip: "10.0.0.1", proto: "http", uri: "/v1/x?y", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
		{name: "strip deep prefix", head: "GET /a/b/c HTTP/1.1\r\nHost: h\r\n\r\n", strip: 4,
			ip: "10.0.0.1", proto: "http", uri: "/c", xff: "10.0.0.1", fwd: `for=10.0.0.1;host="h";proto=http`,
			keep: []h1Pair{{"Host", "h"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h reqHead
			in := []byte(c.head + c.body)
			if n, st := parseRequestHead(in, &h); st != h1OK || n != len(c.head) {
				t.Fatalf("parseRequestHead(%q) = %d, %v", c.head, n, st)
			}
			for _, f := range c.extra {
				h.fields = append(h.fields, h1Field{[]byte(f[0]), []byte(f[1])})
			}
			u := upstreamRequest{reqID: []byte("rid-1"), tp: []byte(tp), ip: []byte(c.ip), proto: c.proto,
				stripPrefix: c.strip}
			out := appendUpstreamRequest([]byte("prefix"), &h, &u)
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("appended over the buffer: %q", out)
			}
			out = out[len("prefix"):]
			start, fields := headLines(t, out)
			if want := string(h.method) + " " + c.uri + " HTTP/1.1"; start != want {
				t.Errorf("request line %q, want %q", start, want)
			}
			for _, name := range hopNames {
				if vs := valuesOf(fields, name); len(vs) > 0 {
					t.Errorf("hop-by-hop %s passed on: %q", name, vs)
				}
			}
			for _, f := range fields {
				if identityField([]byte(f[0])) || strings.EqualFold(strings.ReplaceAll(f[0], "_", "-"), "x-wolke-identity") {
					t.Errorf("identity look-alike passed on: %q", f)
				}
			}
			for name, want := range map[string]string{"X-Request-Id": "rid-1", "Traceparent": tp,
				"X-Forwarded-For": c.xff, "X-Forwarded-Proto": c.proto, "X-Forwarded-Host": string(h.host),
				"Forwarded": c.fwd} {
				if vs := valuesOf(fields, name); len(vs) != 1 || vs[0] != want {
					t.Errorf("%s: %q, want [%q]", name, vs, want)
				}
			}
			// The client's other fields, in their order.
			var kept []h1Pair
			gateway := map[string]bool{"x-request-id": true, "traceparent": true, "x-forwarded-for": true,
				"x-forwarded-proto": true, "x-forwarded-host": true, "forwarded": true}
			for _, f := range fields {
				if !gateway[strings.ToLower(f[0])] {
					kept = append(kept, f)
				}
			}
			if !h1FieldsEqual(kept, c.keep) {
				t.Errorf("client fields\n%q\nwant\n%q", kept, c.keep)
			}

			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(append(out, c.body...))))
			if err != nil {
				t.Fatalf("net/http reads %q: %v", out, err)
			}
			if req.Method != string(h.method) || req.RequestURI != c.uri || req.Host != string(h.host) ||
				req.ContentLength != c.length || req.Close {
				t.Errorf("net/http: %s %q host %q length %d close %v", req.Method, req.RequestURI, req.Host,
					req.ContentLength, req.Close)
			}
			if got := req.Header.Get("X-Forwarded-For"); got != c.xff {
				t.Errorf("net/http X-Forwarded-For %q", got)
			}
			if body, err := io.ReadAll(req.Body); err != nil || string(body) != c.body {
				t.Errorf("body %q, %v", body, err)
			}
		})
	}
}

func TestAppendClientResponse(t *testing.T) {
	type tc struct {
		name   string
		head   string
		close  bool
		start  string
		keep   []h1Pair
		length int64 // net/http's ContentLength of the output
		te     []string
	}
	hops := "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
		"Proxy-Authorization: x\r\nProxy-Authenticate: Basic realm=\"r\"\r\nTE: trailers\r\nTrailer: X-Sum\r\n" +
		"Upgrade: h2c\r\n"
	cases := []tc{
		{name: "hop fields dropped", head: "HTTP/1.1 200 OK\r\n" + hops + "Content-Type: text/plain\r\n" +
			"X-Request-Id: upstream-id\r\nx-request-id: again\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\n",
			start:  "HTTP/1.1 200 OK",
			keep:   []h1Pair{{"Content-Type", "text/plain"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"Content-Length", "5"}},
			length: 5},
		{name: "close when asked", head: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", close: true,
			start: "HTTP/1.1 404 Not Found", keep: []h1Pair{{"Content-Length", "0"}}},
		{name: "upstream close not passed on", head: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			start: "HTTP/1.1 200 OK", keep: []h1Pair{{"Content-Length", "0"}}},
		{name: "HTTP/1.0 upstream", head: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
			start: "HTTP/1.1 200 OK", keep: []h1Pair{{"Content-Length", "3"}}, length: 3},
		{name: "no reason", head: "HTTP/1.1 204\r\nX-A: 1\r\n\r\n", start: "HTTP/1.1 204 ", keep: []h1Pair{{"X-A", "1"}}},
		{name: "chunked", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n",
			start: "HTTP/1.1 200 OK", keep: []h1Pair{{"Transfer-Encoding", "chunked"}}, length: -1, te: []string{"chunked"}},
		// RFC 9112 §6.3: an intermediary forwarding a message with both must remove
		// Content-Length.
		{name: "chunked drops Content-Length", head: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
			close: true, start: "HTTP/1.1 200 OK", keep: []h1Pair{{"Transfer-Encoding", "chunked"}}, length: -1, te: []string{"chunked"}},
		{name: "until close", head: "HTTP/1.1 200 OK\r\nServer: s\r\n\r\n", close: true,
			start: "HTTP/1.1 200 OK", keep: []h1Pair{{"Server", "s"}}, length: -1},
		{name: "not modified", head: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
			start: "HTTP/1.1 304 Not Modified", keep: []h1Pair{{"ETag", "\"x\""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h respHead
			if n, st := parseResponseHead([]byte(c.head), &h); st != h1OK || n != len(c.head) {
				t.Fatalf("parseResponseHead(%q) = %d, %v", c.head, n, st)
			}
			out := appendClientResponse([]byte("prefix"), &h, []byte("rid-9"), c.close, nil)
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("appended over the buffer: %q", out)
			}
			out = out[len("prefix"):]
			start, fields := headLines(t, out)
			if start != c.start {
				t.Errorf("status line %q, want %q", start, c.start)
			}
			for _, name := range hopNames[1:] {
				if vs := valuesOf(fields, name); len(vs) > 0 {
					t.Errorf("hop-by-hop %s passed on: %q", name, vs)
				}
			}
			wantConn := []string(nil)
			if c.close {
				wantConn = []string{"close"}
			}
			if vs := valuesOf(fields, "Connection"); fmt.Sprint(vs) != fmt.Sprint(wantConn) {
				t.Errorf("Connection %q, want %q", vs, wantConn)
			}
			if vs := valuesOf(fields, "X-Request-Id"); len(vs) != 1 || vs[0] != "rid-9" {
				t.Errorf("X-Request-Id %q", vs)
			}
			var kept []h1Pair
			for _, f := range fields {
				if !strings.EqualFold(f[0], "x-request-id") && !strings.EqualFold(f[0], "connection") {
					kept = append(kept, f)
				}
			}
			if !h1FieldsEqual(kept, c.keep) {
				t.Errorf("fields\n%q\nwant\n%q", kept, c.keep)
			}

			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("net/http reads %q: %v", out, err)
			}
			if resp.StatusCode != h.status || resp.ProtoMinor != 1 {
				t.Errorf("net/http: %s %d", resp.Proto, resp.StatusCode)
			}
			if resp.ContentLength != c.length || fmt.Sprint(resp.TransferEncoding) != fmt.Sprint(c.te) {
				t.Errorf("net/http framing: length %d, encoding %q; want %d %q", resp.ContentLength,
					resp.TransferEncoding, c.length, c.te)
			}
			if delimited := c.length >= 0 || len(c.te) > 0; delimited && resp.Close != c.close {
				t.Errorf("net/http close %v, want %v", resp.Close, c.close)
			}
		})
	}
}

package reqvalidate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

var limitsPolicy = Policy{
	MaxBodyBytes:   64,
	MaxURILength:   40,
	MaxHeaderBytes: 200,
	MaxHeaders:     6,
	Methods:        []string{"GET", "POST", "PUT"},
	ContentTypes:   []string{"application/json", "text/*"},
}

func TestLimits(t *testing.T) {
	v, err := New(limitsPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	manyHeaders := "GET / HTTP/1.1\nHost: x\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\n\n"
	bigHeader := "GET / HTTP/1.1\nHost: x\nCookie: " + strings.Repeat("c", 190) + "\n\n"
	tests := []struct {
		name   string
		raw    string
		status int
		field  string
		allow  string
	}{
		{"plain GET", "GET /orders?limit=5 HTTP/1.1\nHost: x\n\n", 0, "", ""},
		{"HEAD comes with GET", "HEAD / HTTP/1.1\nHost: x\n\n", 0, "", ""},
		{"POST json", "POST /orders HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 2\n\n{}", 0, "", ""},
		{"media type parameters and case", "PUT /o HTTP/1.1\nHost: x\nContent-Type: Application/JSON; charset=utf-8\nContent-Length: 2\n\n{}", 0, "", ""},
		{"wildcard subtype", "POST /o HTTP/1.1\nHost: x\nContent-Type: text/csv\nContent-Length: 3\n\na,b", 0, "", ""},
		{"explicit empty POST", "POST /o/cancel HTTP/1.1\nHost: x\nContent-Length: 0\n\n", 0, "", ""},
		{"chunked POST", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\n\n2\r\n{}\r\n0\r\n\r\n", 0, "", ""},
		{"body at the limit", "POST /o HTTP/1.1\nHost: x\nContent-Type: text/plain\nContent-Length: 64\n\n" + strings.Repeat("b", 64), 0, "", ""},
		{"header at the count limit", "GET / HTTP/1.1\nHost: x\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\n\n", 0, "", ""},

		{"405 with Allow", "DELETE /orders/1 HTTP/1.1\nHost: x\n\n", 405, "method", "GET, HEAD, POST, PUT"},
		{"405 methods are case-sensitive", "get / HTTP/1.1\nHost: x\n\n", 405, "method", "GET, HEAD, POST, PUT"},
		{"411 POST without framing", "POST /orders HTTP/1.1\nHost: x\nContent-Type: application/json\n\n", 411, "header.Content-Length", ""},
		{"411 PATCH-like PUT without framing", "PUT /orders/1 HTTP/1.1\nHost: x\n\n", 411, "header.Content-Length", ""},
		{"413 by Content-Length", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 65\n\n" + strings.Repeat("b", 65), 413, "body", ""},
		{"413 chunked body", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\n\n41\r\n" + strings.Repeat("b", 65) + "\r\n0\r\n\r\n", 413, "body", ""},
		{"414", "GET /" + strings.Repeat("u", 40) + " HTTP/1.1\nHost: x\n\n", 414, "uri", ""},
		{"414 counts the query", "GET /orders?q=" + strings.Repeat("q", 31) + " HTTP/1.1\nHost: x\n\n", 414, "uri", ""},
		{"415 wrong type", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/xml\nContent-Length: 4\n\n<a/>", 415, "header.Content-Type", ""},
		{"415 no type", "POST /o HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}", 415, "header.Content-Type", ""},
		{"415 type prefix is not a match", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/jsonx\nContent-Length: 2\n\n{}", 415, "header.Content-Type", ""},
		{"431 by size", bigHeader, 431, "header", ""},
		{"431 by count", manyHeaders, 431, "header", ""},

		// The first violation wins, in the documented order.
		{"414 before 405", "DELETE /" + strings.Repeat("u", 40) + " HTTP/1.1\nHost: x\n\n", 414, "uri", ""},
		{"431 before 405", strings.Replace(manyHeaders, "GET", "DELETE", 1), 431, "header", ""},
		{"405 before 415", "DELETE /o HTTP/1.1\nHost: x\nContent-Type: application/xml\nContent-Length: 4\n\n<a/>", 405, "method", "GET, HEAD, POST, PUT"},
		{"413 before 415", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/xml\nContent-Length: 65\n\n" + strings.Repeat("b", 65), 413, "body", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseRequest(t, tt.raw)
			got := v.Check(req, req.URI().Path())
			wantViolation(t, got, tt.status, tt.field)
			if got != nil && got.Allow != tt.allow {
				t.Errorf("Allow %q, want %q", got.Allow, tt.allow)
			}
		})
	}
}

// TestCheckHeaderBeforeBody checks the header-only path, as HeaderReceived runs
// it: the body has not been read (it is not even there), and the framing of an
// unframed POST is still visible as such.
func TestCheckHeaderBeforeBody(t *testing.T) {
	v, err := New(limitsPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		raw    string
		status int
		field  string
	}{
		{"small body announced", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 10\n\n", 0, ""},
		{"413 by Content-Length alone", "POST /o HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 1000000000\n\n", 413, "body"},
		{"411 unframed", "PUT /o HTTP/1.1\nHost: x\n\n", 411, "header.Content-Length"},
		{"415 before the body", "POST /o HTTP/1.1\nHost: x\nContent-Type: image/png\nContent-Length: 10\n\n", 415, "header.Content-Type"},
		{"GET needs no framing", "GET /o HTTP/1.1\nHost: x\n\n", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantViolation(t, v.CheckHeader(parseHeader(t, tt.raw), nil), tt.status, tt.field)
		})
	}
	if got, want := v.MaxBodySize(), 64; got != want {
		t.Errorf("MaxBodySize %d, want %d", got, want)
	}
}

// TestRequestBuiltInCode: without a header block as received, sizes are
// computed from the fields and a zero Content-Length counts as framed.
func TestRequestBuiltInCode(t *testing.T) {
	v, err := New(limitsPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := new(fasthttp.Request)
	req.Header.SetMethod("POST")
	req.SetRequestURI("/orders")
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"a":1}`)
	wantViolation(t, v.Check(req, []byte("/orders")), 0, "")

	req.Header.Set("X-Big", strings.Repeat("x", 200))
	wantViolation(t, v.Check(req, []byte("/orders")), 431, "header")

	req.Header.Del("X-Big")
	req.SetBodyString(strings.Repeat("x", 65))
	wantViolation(t, v.Check(req, []byte("/orders")), 413, "body")

	req.SetBodyString("{}")
	req.Header.SetContentType("application/xml")
	wantViolation(t, v.Check(req, []byte("/orders")), 415, "header.Content-Type")
}

func TestZeroPolicyAcceptsAll(t *testing.T) {
	v, err := New(Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		"BREW /pot HTTP/1.1\nHost: x\n\n",
		"POST /o HTTP/1.1\nHost: x\n\n",
		"POST /o HTTP/1.1\nHost: x\nContent-Type: application/x-anything\nContent-Length: 3\n\nabc",
		"GET /" + strings.Repeat("u", 4000) + " HTTP/1.1\nHost: x\n\n",
	} {
		req := parseRequest(t, raw)
		wantViolation(t, v.Check(req, req.URI().Path()), 0, "")
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want []string // substrings, one per line
	}{
		{"zero", Policy{}, nil},
		{"full", limitsPolicy, nil},
		{"openapi key", Policy{OpenAPI: "wolke/gateway/openapi/shop"}, nil},
		{"negative limits", Policy{MaxBodyBytes: -1, MaxHeaders: -2},
			[]string{"max_body_bytes: must not be negative", "max_headers: must not be negative"}},
		{"lower-case method", Policy{Methods: []string{"get"}}, []string{`methods: "get": methods are case-sensitive, did you mean "GET"?`}},
		{"bad method", Policy{Methods: []string{"GE T"}}, []string{`methods: "GE T" is not a method name`}},
		{"duplicate method", Policy{Methods: []string{"GET", "GET"}}, []string{`methods: "GET" is listed twice`}},
		{"bad media type", Policy{ContentTypes: []string{"json"}}, []string{`content_types: "json" is not a media type`}},
		{"media type with parameters", Policy{ContentTypes: []string{"text/plain; charset=utf-8"}}, []string{"is not a media type"}},
		{"*/json", Policy{ContentTypes: []string{"*/json"}}, []string{"is not a media type"}},
		{"duplicate media type", Policy{ContentTypes: []string{"text/*", "TEXT/*"}}, []string{`content_types: "TEXT/*" is listed twice`}},
		{"key with leading slash", Policy{OpenAPI: "/wolke/x"}, []string{"openapi: KV key \"/wolke/x\" must not start or end with /"}},
		{"key with space", Policy{OpenAPI: "wolke/my doc"}, []string{"must not contain spaces"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tt.p)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d lines, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d: %q, want it to contain %q", i, lines[i], w)
				}
			}
			if _, err := New(tt.p, nil); !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("New: %v, want ErrInvalidPolicy", err)
			}
		})
	}
}

func TestPolicyJSON(t *testing.T) {
	var p Policy
	doc := `{"max_body_bytes":1048576,"max_uri_length":2048,"max_header_bytes":8192,"max_headers":50,
		"methods":["GET","POST"],"content_types":["application/json"],"openapi":"wolke/gateway/openapi/shop"}`
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	want := Policy{MaxBodyBytes: 1 << 20, MaxURILength: 2048, MaxHeaderBytes: 8192, MaxHeaders: 50,
		Methods: []string{"GET", "POST"}, ContentTypes: []string{"application/json"}, OpenAPI: "wolke/gateway/openapi/shop"}
	if got, _ := json.Marshal(p); string(got) != string(mustJSON(t, want)) {
		t.Errorf("got %s, want %s", got, mustJSON(t, want))
	}
	if b := mustJSON(t, Policy{}); string(b) != "{}" {
		t.Errorf("zero policy marshals to %s, want {}", b)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestViolationJSON(t *testing.T) {
	tests := []struct {
		v    *Violation
		want string
	}{
		{&Violation{Status: 400, Reason: `query parameter "limit": number must be at most 100`, Field: "query.limit"},
			`{"error":"request validation failed","violation":"query parameter \"limit\": number must be at most 100","field":"query.limit"}`},
		{&Violation{Status: 404, Reason: "no such operation"}, `{"error":"request validation failed","violation":"no such operation"}`},
		{&Violation{Status: 400, Reason: "tab\there\x01 \\ ünï \xff"}, `{"error":"request validation failed","violation":"tab\u0009here\u0001 \\ ünï \ufffd"}`},
	}
	for _, tt := range tests {
		got := tt.v.JSON()
		if strings.TrimSpace(string(got)) != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
		var m map[string]string
		if err := json.Unmarshal(got, &m); err != nil || m["violation"] == "" {
			t.Errorf("not valid JSON: %s: %v", got, err)
		}
	}

	v := newViolation(405, "method not allowed", "method", "GET, HEAD")
	var resp fasthttp.Response
	v.Write(&resp)
	if resp.StatusCode() != 405 || string(resp.Header.Peek("Allow")) != "GET, HEAD" ||
		string(resp.Header.ContentType()) != "application/json" || string(resp.Body()) != string(v.JSON()) {
		t.Errorf("Write: %s", resp.String())
	}
}

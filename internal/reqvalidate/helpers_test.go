package reqvalidate

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// parseRequest reads a request the way the gateway's server does, so header
// framing and RawHeaders are what they are in production. CRLFs may be written
// as plain newlines.
func parseRequest(tb testing.TB, raw string) *fasthttp.Request {
	tb.Helper()
	req := new(fasthttp.Request)
	if err := req.Read(bufio.NewReader(strings.NewReader(crlf(raw)))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	return req
}

// parseHeader reads only the request line and header, as HeaderReceived sees
// them before the body is read.
func parseHeader(tb testing.TB, raw string) *fasthttp.RequestHeader {
	tb.Helper()
	h := new(fasthttp.RequestHeader)
	if err := h.Read(bufio.NewReader(strings.NewReader(crlf(raw)))); err != nil {
		tb.Fatalf("parse header %q: %v", raw, err)
	}
	return h
}

func crlf(s string) string {
	if strings.Contains(s, "\r\n") {
		return s
	}
	head, body, _ := strings.Cut(s, "\n\n")
	return strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body
}

// wantViolation compares a result with the expected status and field; status 0
// means accepted.
func wantViolation(tb testing.TB, got *Violation, status int, field string) {
	tb.Helper()
	switch {
	case status == 0 && got != nil:
		tb.Errorf("refused with %v, want accepted", got)
	case status != 0 && got == nil:
		tb.Errorf("accepted, want %d (%s)", status, field)
	case status != 0 && (got.Status != status || got.Field != field):
		tb.Errorf("got %v, want %d (%s)", got, status, field)
	}
}

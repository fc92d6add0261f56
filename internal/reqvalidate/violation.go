package reqvalidate

import (
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// Violation is why a request was refused.
type Violation struct {
	Status int    // HTTP status to answer with
	Reason string // one line, for the client; never includes the offending value
	// Field names what is wrong: "uri", "method", "header", "header.Content-Type",
	// "path", "path.id", "query.limit", "body", "body.items[0].qty".
	Field string
	// Allow is the value of the Allow header a 405 must carry, "" otherwise.
	Allow string

	json []byte // prebuilt for the violations of a Validator, nil for the others
}

// newViolation returns a Violation with its JSON prebuilt, for the violations a
// Validator hands out again and again.
func newViolation(status int, reason, field, allow string) *Violation {
	v := &Violation{Status: status, Reason: reason, Field: field, Allow: allow}
	v.json = v.appendJSON(nil)
	return v
}

// JSON is the response body for v:
// {"error":"request validation failed","violation":"...","field":"..."}, the field
// left out when there is none. The result may be shared: do not modify it.
func (v *Violation) JSON() []byte {
	if v.json != nil {
		return v.json
	}
	return v.appendJSON(nil)
}

func (v *Violation) appendJSON(b []byte) []byte {
	b = append(b, `{"error":"request validation failed","violation":`...)
	b = appendJSONString(b, v.Reason)
	if v.Field != "" {
		b = append(b, `,"field":`...)
		b = appendJSONString(b, v.Field)
	}
	return append(b, "}\n"...)
}

// Write makes resp the answer to a request refused for v: status, Allow header,
// a JSON body. The gateway adds its own headers (X-Request-Id) as for any answer.
func (v *Violation) Write(resp *fasthttp.Response) {
	resp.SetStatusCode(v.Status)
	resp.Header.SetContentType("application/json")
	if v.Allow != "" {
		resp.Header.Set("Allow", v.Allow)
	}
	resp.SetBody(v.JSON())
}

var _ error = (*Violation)(nil)

// Error makes a Violation usable as an error, for logs and tests.
func (v *Violation) Error() string {
	s := strconv.Itoa(v.Status) + " " + v.Reason
	if v.Field != "" {
		s += " (" + v.Field + ")"
	}
	return s
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

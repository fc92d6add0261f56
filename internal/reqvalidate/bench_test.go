package reqvalidate

import (
	"testing"
)

// A typical API request: a dozen header fields, a small JSON body.
var benchRaw = "POST /orders HTTP/1.1\nHost: shop.example.com\nUser-Agent: bench/1.0\nAccept: application/json\n" +
	"Accept-Encoding: gzip, br\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\nX-Request-Id: 0123456789abcdef\n" +
	"Traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\nX-Tenant: acme\n" +
	"Content-Type: application/json\nContent-Length: " + itoa(len(goodOrder)) + "\n\n" + goodOrder

func BenchmarkCheckHeader(b *testing.B) {
	v, err := New(Policy{
		MaxBodyBytes: 1 << 20, MaxURILength: 2048, MaxHeaderBytes: 8192, MaxHeaders: 50,
		Methods: []string{"GET", "POST", "PUT", "DELETE"}, ContentTypes: []string{"application/json", "text/*"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := parseRequest(b, benchRaw)
	if vi := v.CheckHeader(&req.Header, nil); vi != nil {
		b.Fatal(vi)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v.CheckHeader(&req.Header, nil) != nil {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCheckHeaderRefused: refusing allocates nothing either.
func BenchmarkCheckHeaderRefused(b *testing.B) {
	v, err := New(Policy{MaxBodyBytes: 16, ContentTypes: []string{"application/json"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := parseRequest(b, benchRaw)
	b.ReportAllocs()
	for b.Loop() {
		if v.CheckHeader(&req.Header, nil) == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkCheckOpenAPI(b *testing.B) {
	v, err := New(Policy{MaxBodyBytes: 1 << 20, Methods: []string{"GET", "POST"}}, []byte(shopJSON))
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct{ name, raw string }{
		{"GET query", "GET /orders?limit=10&status=open HTTP/1.1\nHost: shop\nAccept: application/json\n\n"},
		{"GET path", "GET /orders/42 HTTP/1.1\nHost: shop\nAccept: application/json\n\n"},
		{"POST body", benchRaw},
		{"404", "GET /nowhere HTTP/1.1\nHost: shop\n\n"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			req := parseRequest(b, bb.raw)
			path := req.URI().Path()
			want := bb.name == "404"
			if vi := v.Check(req, path); (vi != nil) != want {
				b.Fatal(vi)
			}
			b.ReportAllocs()
			for b.Loop() {
				if (v.Check(req, path) != nil) != want {
					b.Fatal("unexpected result")
				}
			}
		})
	}
}

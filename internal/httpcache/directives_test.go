package httpcache

import (
	"slices"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestParseCacheControl(t *testing.T) {
	for _, tc := range []struct {
		in    string
		check func(d directives) bool
	}{
		{"max-age=60", func(d directives) bool { return d.maxAge == 60 && d.sMaxAge == absent }},
		{"MAX-AGE = 60", func(d directives) bool { return d.maxAge == 60 }},
		{`max-age="60"`, func(d directives) bool { return d.maxAge == 60 }},
		{"max-age=abc", func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=99999999999999", func(d directives) bool { return d.maxAge == maxDelta }},
		{"max-age=5, max-age=50", func(d directives) bool { return d.maxAge == 5 }},
		{"s-maxage=7,public", func(d directives) bool { return d.sMaxAge == 7 && d.public }},
		{"no-store", func(d directives) bool { return d.noStore }},
		{"no-cache", func(d directives) bool { return d.noCache && d.noCacheFields == nil }},
		{`no-cache="set-cookie, X-Foo"`, func(d directives) bool {
			return !d.noCache && slices.Equal(d.noCacheFields, []string{"Set-Cookie", "X-Foo"})
		}},
		{`private="a,b", max-age=3`, func(d directives) bool {
			return !d.private && slices.Equal(d.privateFields, []string{"A", "B"}) && d.maxAge == 3
		}},
		{"private", func(d directives) bool { return d.private }},
		{"must-revalidate, proxy-revalidate", func(d directives) bool { return d.mustRevalidate && d.proxyRevalidate }},
		{"stale-while-revalidate=30, stale-if-error=600", func(d directives) bool {
			return d.staleWhileRevalidate == 30 && d.staleIfError == 600
		}},
		{"max-stale", func(d directives) bool { return d.maxStale == maxDelta }},
		{"max-stale=9, min-fresh=4, only-if-cached", func(d directives) bool {
			return d.maxStale == 9 && d.minFresh == 4 && d.onlyIfCached
		}},
		{" , ,unknown=\"x,y\", max-age=1", func(d directives) bool { return d.maxAge == 1 }},
	} {
		d := newDirectives()
		d.parse([]byte(tc.in), true)
		if !tc.check(d) {
			t.Errorf("%q: parsed %+v", tc.in, d)
		}
	}
}

func TestParseVary(t *testing.T) {
	names, star := parseVary(nil, []byte("accept-encoding, Accept-Language,accept-encoding"))
	if star || !slices.Equal(names, []string{"Accept-Encoding", "Accept-Language"}) {
		t.Fatalf("%v %v", names, star)
	}
	if _, star = parseVary(nil, []byte("Accept, *")); !star {
		t.Fatal("* not seen")
	}
}

func TestVaryKeyNormalizes(t *testing.T) {
	key := func(kv ...string) string {
		var h fasthttp.RequestHeader
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return string(appendVaryKey(nil, []string{"Accept-Encoding", "X-Other"}, &h))
	}
	if key("Accept-Encoding", "gzip,  br") != key("Accept-Encoding", "gzip", "Accept-Encoding", " br") {
		t.Error("whitespace and line splits should not matter")
	}
	if key("Accept-Encoding", "gzip") == key("Accept-Encoding", "br") {
		t.Error("different values, same key")
	}
	if key() == key("Accept-Encoding", "") {
		t.Error("absent and empty should differ")
	}
	if key("X-Other", "1") == key("Accept-Encoding", "1") {
		t.Error("values of different fields should not be confused")
	}
}

func TestSameHostKey(t *testing.T) {
	host := []byte("shop.example")
	for ref, want := range map[string]string{
		"/a?b":                      "shop.example/a?b",
		"http://shop.example/x":     "shop.example/x",
		"https://SHOP.example":      "shop.example/",
		"https://shop.example?q=1":  "shop.example/?q=1",
		"//shop.example/x":          "",
		"http://shop.example.evil/": "",
		"http://other.example/x":    "",
		"relative":                  "",
	} {
		got, ok := sameHostKey(host, []byte(ref))
		if ok != (want != "") || got != want {
			t.Errorf("%q: %q %v, want %q", ref, got, ok, want)
		}
	}
}

// Requests with cookies are read field by field, others in one pass: both must
// read the same.
func TestScanRequestWithAndWithoutCookies(t *testing.T) {
	fields := []string{
		"Cache-Control", "max-age=5", "Cache-Control", "min-fresh=2", "Pragma", "no-cache",
		"Authorization", "Basic x", "If-None-Match", `"a"`, "If-Modified-Since", "Mon, 02 Mar 2026 10:00:00 GMT",
		"If-Range", `"b"`,
	}
	for i := 0; i < len(fields); i += 2 {
		for _, cookie := range []bool{false, true} {
			var h fasthttp.RequestHeader
			h.Add(fields[i], fields[i+1])
			if cookie {
				h.Add("Cookie", "a=1")
			}
			got := scanRequest(&h)
			h.Del("Cookie")
			want := scanRequest(&h)
			if got.hasCC != want.hasCC || got.cc.maxAge != want.cc.maxAge || got.cc.minFresh != want.cc.minFresh ||
				got.pragmaNoCache != want.pragmaNoCache || got.auth != want.auth || string(got.inm) != string(want.inm) ||
				string(got.ims) != string(want.ims) || got.bypass != want.bypass {
				t.Errorf("%s (cookie %v): %+v, want %+v", fields[i], cookie, got, want)
			}
		}
	}
	var h fasthttp.RequestHeader
	h.Add("Cookie", "a=1")
	h.Add("Cache-Control", "max-age=5")
	h.Add("Cache-Control", "no-cache")
	if ri := scanRequest(&h); ri.cc.maxAge != 5 || !ri.cc.noCache {
		t.Errorf("two Cache-Control lines with cookies: %+v", ri.cc)
	}
}

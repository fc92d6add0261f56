package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/state"
)

var requestURISeeds = []string{
	"/", "/v1/kv/a", "/v1/kv/a?raw", "/v1/kv/a?", "/v1/kv/a??", "/v1/kv/a?b?", "/v1/kv//x//y",
	"/v1/kv/a%2Fb", "/v1/kv/a%zz", "/v1/kv/a b", "/v1/kv/a\x01", "/v1/kv/a?x=\x7f", "/v1/kv/ü",
	"/v1/kv/a!b", "/v1/kv/(a)*", "/v1/kv/a#frag", "/v1/kv/a?x=1#frag", "/v1/kv/~user.name-_",
	"/v1/kv/$&+,:;=@", "/v1/health/service/web?passing&tag=a&tag=b&filter=Service.Port%20%3D%3D%2080",
	"*", "", "http://host/x", "//host/x", "/a/../b", "/a/./b", "/a?x=%", "/a?x=a+b", "/a[1]", "/a{b}",
	"/a|b", "/a\\b", "/a^b", "/a`b", "/a\"b", "/a<b>", "/a'b",
}

// TestParseRequestURLMatchesNetURL holds the in-place parse to url.ParseRequestURI.
func TestParseRequestURLMatchesNetURL(t *testing.T) {
	for _, raw := range requestURISeeds {
		checkRequestURL(t, raw)
	}
}

func FuzzParseRequestURL(f *testing.F) {
	for _, s := range requestURISeeds {
		f.Add(s)
	}
	f.Fuzz(checkRequestURL)
}

func checkRequestURL(t *testing.T, raw string) {
	want, wantErr := url.ParseRequestURI(raw)
	var got url.URL
	err := parseRequestURL(raw, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, net/url says %v", raw, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(&got, want) {
		t.Fatalf("%q: parsed %#v, net/url parses %#v", raw, got, *want)
	}
}

var querySeeds = []string{
	"", "passing", "passing&tag=a&tag=b", "a=1&a=2&b", "a=1;b=2&c=3", "&&a=1&&", "a=%zz&b=2",
	"a=x+y&b=%20z", "k%3Dx=v%26w", "=v", "a==b", "index=5&wait=1s&stale", "tag=a&x=1&tag=b&x=2&tag=c",
	"q1&q2&q3&q4&q5&q6&q7&q8&q9&q10&q11&q12&q13&q14&q15&q16&q17&q18",
}

// TestParseQueryMatchesNetURL holds the pooled query parse to url.ParseQuery, also
// when the request is reused from the pool.
func TestParseQueryMatchesNetURL(t *testing.T) {
	fr := fastRequests.Get().(*fastRequest)
	defer fr.release()
	for _, q := range querySeeds {
		checkQuery(t, fr, q)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range querySeeds {
		f.Add(s)
	}
	fr := &fastRequest{form: url.Values{}}
	f.Fuzz(func(t *testing.T, q string) { checkQuery(t, fr, q) })
}

func checkQuery(t *testing.T, fr *fastRequest, q string) {
	clear(fr.form)
	fr.qslots.reset()
	want, _ := url.ParseQuery(q)
	got := fr.parseQuery(q)
	if len(got) != len(want) {
		t.Fatalf("%q: parsed %v, net/url parses %v", q, got, want)
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Fatalf("%q: parsed %v, net/url parses %v", q, got, want)
		}
	}
}

// TestFastFrontRequestsOnOneConnectionKeepTheirOwnValues sends requests that differ
// in their URI, Host and header values on one keep-alive connection: the strings a
// connection reuses must follow every change.
func TestFastFrontRequestsOnOneConnectionKeepTheirOwnValues(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	tx := s.backend.Store().WriteTxn()
	for k, v := range map[string]string{"one": "v1", "two": "v2"} {
		if err := tx.KVSet(3, &state.KVEntry{Key: k, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit()
	steps := []struct{ path, host, reqID, want string }{
		{"/v1/kv/one?raw", "a", "id-1", "v1"},
		{"/v1/kv/two?raw", "a", "id-1", "v2"},
		{"/v1/kv/one?raw", "b", "id-2", "v1"},
		{"/v1/kv/one?raw", "b", "id-2", "v1"},
		{"/v1/kv/two?raw=", "c", "id-3", "v2"},
	}
	for i, st := range steps {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Request-Id: %s\r\n\r\n", st.path, st.host, st.reqID)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != st.want {
			t.Fatalf("step %d: %d %q, want 200 %q", i, resp.StatusCode, body, st.want)
		}
		if got := resp.Header.Get("X-Request-Id"); got != st.reqID {
			t.Fatalf("step %d: X-Request-Id %q, want %q", i, got, st.reqID)
		}
	}
}

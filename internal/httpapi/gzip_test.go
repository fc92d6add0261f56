package httpapi

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wolke-platform/wolke/internal/state"
)

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"deflate, gzip", true},
		{"br;q=1.0, GZIP;q=0.5", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0", false},
		{"*", true},
		{"x-gzip", true},
		{"identity", false},
		{"deflate, br", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Accept-Encoding", tc.header)
		}
		if got := acceptsGzip(r); got != tc.want {
			t.Errorf("Accept-Encoding %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}

// TestLargeAnswersAreGzipped: like Consul, answers of 1400 bytes and more go out
// compressed to clients that accept gzip, and decompress to exactly the plain answer;
// smaller ones and clients without gzip get plain JSON. A shared health answer is
// compressed once and reused.
func TestLargeAnswersAreGzipped(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{})
	tx := s.backend.Store().WriteTxn()
	for i := range 20 {
		if err := tx.CatalogRegister(uint64(5+i), &state.RegisterRequest{Node: state.Node{Node: fmt.Sprintf("n%d", i), Address: "10.0.0.1"},
			Service: &state.Service{ID: fmt.Sprintf("web-%d", i), Service: "web", Port: 80}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.CatalogRegister(30, &state.RegisterRequest{Node: state.Node{Node: "n0", Address: "10.0.0.1"},
		Service: &state.Service{ID: "tiny", Service: "tiny", Port: 1}}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	get := func(path, enc string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		if enc != "" {
			r.Header.Set("Accept-Encoding", enc)
		}
		s.Handler().ServeHTTP(rec, r)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec
	}
	for _, path := range []string{"/v1/health/service/web", "/v1/catalog/service/web"} {
		plain := get(path, "")
		if plain.Header().Get("Content-Encoding") != "" || plain.Body.Len() < gzipMinSize {
			t.Fatalf("%s without gzip: encoding %q, %d bytes", path, plain.Header().Get("Content-Encoding"), plain.Body.Len())
		}
		for range 2 {
			zipped := get(path, "gzip")
			if zipped.Header().Get("Content-Encoding") != "gzip" || zipped.Header().Get("Vary") != "Accept-Encoding" {
				t.Fatalf("%s with gzip: headers %v", path, zipped.Header())
			}
			if cl := zipped.Header().Get("Content-Length"); cl != fmt.Sprint(zipped.Body.Len()) || zipped.Body.Len() >= plain.Body.Len()/2 {
				t.Fatalf("%s: compressed %d bytes (Content-Length %s) of %d", path, zipped.Body.Len(), cl, plain.Body.Len())
			}
			zr, err := gzip.NewReader(bytes.NewReader(zipped.Body.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, plain.Body.Bytes()) {
				t.Fatalf("%s: decompressed answer differs from the plain one (%v)", path, err)
			}
		}
	}
	small := get("/v1/health/service/tiny", "gzip")
	if small.Header().Get("Content-Encoding") != "" || !strings.Contains(small.Body.String(), `"Port":1`) {
		t.Fatalf("small answer: encoding %q, body %q", small.Header().Get("Content-Encoding"), small.Body)
	}
}

// TestGzipThroughAGoClient: Go's HTTP client, which consul/api uses, asks for gzip and
// gets the plain answer back without knowing.
func TestGzipThroughAGoClient(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{})
	tx := s.backend.Store().WriteTxn()
	for i := range 20 {
		tx.CatalogRegister(uint64(5+i), &state.RegisterRequest{Node: state.Node{Node: fmt.Sprintf("n%d", i), Address: "10.0.0.1"},
			Service: &state.Service{ID: fmt.Sprintf("web-%d", i), Service: "web", Port: 80}})
	}
	tx.Commit()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/health/service/web")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !resp.Uncompressed || strings.Count(string(body), `"Service":"web"`) != 20 {
		t.Fatalf("uncompressed by the client: %v, %d bytes", resp.Uncompressed, len(body))
	}
}

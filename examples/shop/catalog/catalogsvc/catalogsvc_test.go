package catalogsvc

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

type list struct {
	Total    int                `json:"total"`
	Page     int                `json:"page"`
	PerPage  int                `json:"per_page"`
	Articles []shopdata.Article `json:"articles"`
}

func get(t *testing.T, c *http.Client, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestCatalogAPI(t *testing.T) {
	agent := shoptest.StartAgent(t)
	svc := agent.Start(t, Service())
	c := &http.Client{}
	data := shopdata.Default()
	first, _ := data.Article("1")
	electronics := data.Search(shopdata.Query{Department: "electronics"})

	tests := []struct {
		name   string
		path   string
		status int
		check  func(t *testing.T, body []byte)
	}{
		{"departments", "/departments", 200, func(t *testing.T, b []byte) {
			var deps []shopdata.Department
			mustDecode(t, b, &deps)
			want := data.Departments()
			for i := range want {
				for j := range want[i].Categories {
					want[i].Categories[j].Department = "" // not part of the JSON
				}
			}
			if !slices.EqualFunc(deps, want, func(a, b shopdata.Department) bool {
				return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.Categories, b.Categories)
			}) {
				t.Fatalf("departments differ from the data set: %s", b[:200])
			}
			if !strings.Contains(string(b), `"categories":[{"id":"laptops","name":"Laptops","count":`) {
				t.Fatalf("JSON shape: %s", b[:200])
			}
		}},
		{"article", "/articles/1", 200, func(t *testing.T, b []byte) {
			var a shopdata.Article
			mustDecode(t, b, &a)
			if a != first {
				t.Fatalf("got %+v, want %+v", a, first)
			}
			for _, f := range []string{`"id":"1"`, `"name":`, `"department":`, `"category":`, `"price_cents":`, `"description":`, `"stock_hint":`} {
				if !strings.Contains(string(b), f) {
					t.Fatalf("no %s in %s", f, b)
				}
			}
		}},
		{"unknown article", "/articles/999999", 404, errorBody},
		{"article ID with a leading zero", "/articles/01", 404, errorBody},
		{"first page", "/articles", 200, func(t *testing.T, b []byte) {
			l := decodeList(t, b)
			if l.Total != data.Len() || l.Page != 1 || l.PerPage != DefaultPerPage || len(l.Articles) != DefaultPerPage || l.Articles[0].ID != "1" {
				t.Fatalf("total %d page %d per_page %d, %d articles", l.Total, l.Page, l.PerPage, len(l.Articles))
			}
		}},
		{"department, page 2", "/articles?department=electronics&page=2&per_page=10", 200, func(t *testing.T, b []byte) {
			l := decodeList(t, b)
			if l.Total != electronics.Total || l.Page != 2 || l.PerPage != 10 || !slices.Equal(l.Articles, electronics.Articles[10:20]) {
				t.Fatalf("got total %d, %d articles", l.Total, len(l.Articles))
			}
		}},
		{"category", "/articles?category=headphones&per_page=100", 200, func(t *testing.T, b []byte) {
			l := decodeList(t, b)
			cat, _ := data.Category("headphones")
			if l.Total != cat.Count || len(l.Articles) != cat.Count {
				t.Fatalf("total %d, %d articles, want %d", l.Total, len(l.Articles), cat.Count)
			}
			for _, a := range l.Articles {
				if a.Category != "headphones" || a.Department != "electronics" {
					t.Fatalf("article %+v", a)
				}
			}
		}},
		{"search", "/articles?q=WIRELESS+Head", 200, func(t *testing.T, b []byte) {
			l := decodeList(t, b)
			if l.Total == 0 {
				t.Fatal("nothing found")
			}
			for _, a := range l.Articles {
				if !strings.Contains(a.Name, "Wireless") || !strings.Contains(a.Name, "Head") {
					t.Fatalf("found %q", a.Name)
				}
			}
		}},
		{"nothing found", "/articles?q=zeppelin", 200, func(t *testing.T, b []byte) {
			if string(b) != `{"total":0,"page":1,"per_page":24,"articles":[]}`+"\n" {
				t.Fatalf("body %s", b)
			}
		}},
		{"past the last page", "/articles?category=laptops&page=50", 200, func(t *testing.T, b []byte) {
			if l := decodeList(t, b); l.Total == 0 || len(l.Articles) != 0 {
				t.Fatalf("total %d, %d articles", l.Total, len(l.Articles))
			}
		}},
		{"unknown department", "/articles?department=cars", 404, errorBody},
		{"unknown category", "/articles?category=cars", 404, errorBody},
		{"page 0", "/articles?page=0", 400, errorBody},
		{"per_page too large", "/articles?per_page=101", 400, errorBody},
		{"per_page not a number", "/articles?per_page=ten", 400, errorBody},
		{"query too long", "/articles?q=" + strings.Repeat("a", MaxQueryLen+1), 400, errorBody},
		{"unknown path", "/nope", 404, errorBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := get(t, c, svc.URL+tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if cc := h.Get("Cache-Control"); cc != "public, max-age=60" {
				t.Fatalf("Cache-Control %q", cc)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			tt.check(t, body)
		})
	}

	t.Run("not a GET", func(t *testing.T) {
		resp, err := c.Post(svc.URL+"/articles", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Cache-Control") != "" {
			t.Fatalf("status %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		errorBody(t, b)
	})

	t.Run("registered with its route, reachable by name", func(t *testing.T) {
		svcs, _, err := agent.Consul.Catalog().Service(Name, "", nil)
		if err != nil || len(svcs) != 1 || !slices.Contains(svcs[0].ServiceTags, "wolke.http.path=/api/catalog") {
			t.Fatalf("catalog: %+v, %v", svcs, err)
		}
		var a shopdata.Article
		if err := chassis.GetJSON(context.Background(), agent.Client(t), "http://catalog/articles/1", &a); err != nil || a != first {
			t.Fatalf("by name: %+v, %v", a, err)
		}
	})
}

func mustDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func decodeList(t *testing.T, b []byte) list {
	t.Helper()
	var l list
	mustDecode(t, b, &l)
	if l.Articles == nil {
		t.Fatalf("articles is not an array: %s", b)
	}
	return l
}

func errorBody(t *testing.T, b []byte) {
	t.Helper()
	var e map[string]string
	if err := json.Unmarshal(b, &e); err != nil || e["error"] == "" || len(e) != 1 || strings.Contains(e["error"], "\n") {
		t.Fatalf("not a JSON error: %s", b)
	}
}

// BenchmarkHandler measures the catalog's own cost per request (no network).
func BenchmarkHandler(b *testing.B) {
	h, err := NewHandler(shopdata.Default())
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/articles/1234", "/articles?department=garden&page=3", "/articles?q=wireless", "/departments"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

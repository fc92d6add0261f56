package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// BenchmarkArticlePage renders the signed-out article page (the Black Friday
// page) with its two API calls to a fake gateway over loopback, behind the
// chassis middleware without the access log.
func BenchmarkArticlePage(b *testing.B) {
	gw := newFakeGateway(b)
	var cfg Config
	svc := service(&cfg)
	env := map[string]string{"GATEWAY_URL": gw.URL(), "ACCESS_LOG": "false", "WOLKE_HTTP_ADDR": "127.0.0.1:1"}
	svc.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	svc.Stdout = io.Discard
	in, err := chassis.New(svc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(in.Close)
	s, err := newServer(in, cfg)
	if err != nil {
		b.Fatal(err)
	}
	h := in.Handler(s.routes())
	req := httptest.NewRequest("GET", "/articles/p3", nil)
	req.Header.Set("X-Forwarded-For", clientIP)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkRenderArticle is the template alone: the article page with four
// recommendations and the navigation.
func BenchmarkRenderArticle(b *testing.B) {
	rd, err := newRenderer()
	if err != nil {
		b.Fatal(err)
	}
	st := site{Departments: fakeDepts, Nav: navHTML(fakeDepts)}
	p := articlePage{Article: fakeArticles[2], Department: &fakeDepts[0], Category: &fakeDepts[0].Categories[0],
		Recommendations: fakeArticles[3:7]}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		s := st
		rd.render(w, http.StatusOK, "article", &s, p, cachePolicy(30e9))
	}
}

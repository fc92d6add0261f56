package agent

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkKVHandler measures the API's cost per request without the network: the
// middleware, the handler, and for puts Raft (in memory) and the FSM.
func BenchmarkKVHandler(b *testing.B) {
	a := startDev(b)
	h := a.http.Handler()
	val := bytes.Repeat([]byte("v"), 256)
	for i := 0; i < 1000; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/kv/bench/"+strconv.Itoa(i), bytes.NewReader(val)))
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		req := httptest.NewRequest("GET", "/v1/kv/bench/7", nil)
		for i := 0; i < b.N; i++ {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	})
	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/kv/bench/7", bytes.NewReader(val)))
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})
	})
}

// BenchmarkHealthService measures a health/service?passing lookup of a 20-instance
// service among 2,000 instances without the network: the answer is shared, so this
// is the per-request cost around it (routing, query, index check, headers, write).
func BenchmarkHealthService(b *testing.B) {
	a := startDev(b)
	h := a.http.Handler()
	for i := 0; i < 2000; i++ {
		node, svc := "node-"+strconv.Itoa(i%100), "bench-"+strconv.Itoa(i/20)
		id := svc + "-" + strconv.Itoa(i%20)
		body := `{"Node":"` + node + `","Address":"10.0.0.` + strconv.Itoa(i%100) + `","Service":{"ID":"` + id +
			`","Service":"` + svc + `","Port":8000,"Tags":["v1"]},"Check":{"CheckID":"service:` + id +
			`","Name":"bench","Status":"passing","ServiceID":"` + id + `"}}`
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/catalog/register", strings.NewReader(body)))
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest("GET", "/v1/health/service/bench-0?passing", nil)
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

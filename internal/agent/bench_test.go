package agent

import (
	"bytes"
	"net/http/httptest"
	"strconv"
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

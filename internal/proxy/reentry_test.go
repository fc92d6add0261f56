package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// A service behind the gateway that calls another service through the same gateway
// (the storefront does), both cached, the same path after their prefixes: the cache
// must keep /out/x and /in/x apart (it keyed them by the stripped path once, so the
// inner request waited on the outer one's fetch until it timed out).
func TestCallsBackThroughTheGateway(t *testing.T) {
	e := newEnv(t)
	inner := newBackend(t, "inner", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "inner "+r.URL.Path)
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	outer := newBackend(t, "outer", func(w http.ResponseWriter, r *http.Request) {
		resp, err := hc.Get(e.base + "/in" + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.Header().Set("Cache-Control", "public, max-age=30")
		w.Write(append([]byte("outer+"), b...))
	})
	e.register("in", inner, "wolke.cache=true")
	e.register("out", outer, "wolke.cache=true")
	e.waitInstances("in", 1)
	e.waitInstances("out", 1)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		resp, body := e.get("/out/x")
		if resp.StatusCode != 200 || body != "outer+inner /x" || time.Since(t0) > time.Second {
			t.Fatalf("round %d: %d %q in %v", i, resp.StatusCode, body, time.Since(t0))
		}
		if _, body := e.get("/in/x"); body != "inner /x" {
			t.Fatalf("round %d: /in/x answered %q", i, body)
		}
	}
}

package recommendationssvc

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/catalog/catalogsvc"
	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
)

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func recommend(t *testing.T, base, id string) (int, []shopdata.Article) {
	t.Helper()
	status, b := get(t, base+"/recommendations?article="+id)
	if status != 200 {
		var e map[string]string
		if err := json.Unmarshal(b, &e); err != nil || e["error"] == "" {
			t.Fatalf("status %d without a JSON error: %s", status, b)
		}
		return status, nil
	}
	var ans struct {
		Articles []shopdata.Article `json:"articles"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatal(err)
	}
	return status, ans.Articles
}

// poll waits up to 5s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func put(t *testing.T, a *shoptest.Agent, key, value string) {
	t.Helper()
	if _, err := a.Consul.KV().Put(&api.KVPair{Key: "config/recommendations/" + key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRecommendations(t *testing.T) {
	agent := shoptest.StartAgent(t)
	cat := agent.Start(t, catalogsvc.Service())
	svc := agent.Start(t, Service())
	data := shopdata.Default()

	t.Run("same category, not the article, stable", func(t *testing.T) {
		for _, id := range []string{"1", "77", "3082"} {
			a, _ := data.Article(id)
			status, recs := recommend(t, svc.URL, id)
			if status != 200 || len(recs) != MaxArticles {
				t.Fatalf("article %s: status %d, %d articles", id, status, len(recs))
			}
			seen := map[string]bool{}
			for _, r := range recs {
				if r.ID == id || r.Category != a.Category || seen[r.ID] {
					t.Fatalf("article %s (%s): recommended %+v", id, a.Category, r)
				}
				seen[r.ID] = true
				if want, _ := data.Article(r.ID); want != r {
					t.Fatalf("article %+v differs from the catalog's %+v", r, want)
				}
			}
			if _, again := recommend(t, svc.URL, id); !reflect.DeepEqual(again, recs) {
				t.Fatalf("article %s: a second answer differs", id)
			}
		}
		_, r1 := recommend(t, svc.URL, "1")
		_, r2 := recommend(t, svc.URL, "2")
		if reflect.DeepEqual(r1, r2) {
			t.Fatal("two articles get the same recommendations")
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, tt := range []struct {
			path   string
			status int
		}{
			{"/recommendations", 400},
			{"/recommendations?article=", 400},
			{"/recommendations?article=999999", 404},
			{"/recommendations?article=..%2Fdepartments", 404},
			{"/elsewhere", 404},
		} {
			if status, b := get(t, svc.URL+tt.path); status != tt.status || !strings.HasPrefix(string(b), `{"error":`) {
				t.Errorf("%s: %d %s, want %d", tt.path, status, b, tt.status)
			}
		}
	})

	t.Run("fail_percent", func(t *testing.T) {
		put(t, agent, KeyFailPercent, "100")
		poll(t, "failures", func() bool { s, _ := recommend(t, svc.URL, "1"); return s == 500 })
		put(t, agent, KeyFailPercent, "50")
		poll(t, "a mix of answers", func() bool {
			codes := map[int]int{}
			for i := 0; i < 40; i++ {
				s, _ := recommend(t, svc.URL, "1")
				codes[s]++
			}
			return codes[200] > 0 && codes[500] > 0 && codes[200]+codes[500] == 40
		})
		put(t, agent, KeyFailPercent, "0")
		poll(t, "recovery", func() bool {
			for i := 0; i < 20; i++ {
				if s, _ := recommend(t, svc.URL, "1"); s != 200 {
					return false
				}
			}
			return true
		})
	})

	t.Run("delay", func(t *testing.T) {
		put(t, agent, KeyDelay, "1s")
		poll(t, "a slow answer", func() bool {
			start := time.Now()
			s, _ := recommend(t, svc.URL, "1")
			return s == 200 && time.Since(start) >= time.Second
		})
		// A caller that gives up ends the wait (X-Request-Timeout is the chassis's deadline).
		req, _ := http.NewRequest("GET", svc.URL+"/recommendations?article=1", nil)
		req.Header.Set("X-Request-Timeout", "50ms")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != 503 || took > 800*time.Millisecond {
			t.Fatalf("status %d after %v", resp.StatusCode, took)
		}
		put(t, agent, KeyDelay, "0s")
		poll(t, "a fast answer", func() bool {
			start := time.Now()
			s, _ := recommend(t, svc.URL, "1")
			return s == 200 && time.Since(start) < 200*time.Millisecond
		})
	})

	t.Run("without the catalog", func(t *testing.T) {
		cat.Stop(t)
		status, b := get(t, svc.URL+"/recommendations?article=1")
		if status != http.StatusBadGateway || !strings.Contains(string(b), `"error":"catalog: `) {
			t.Fatalf("%d %s", status, b)
		}
		poll(t, "not ready", func() bool {
			entries, _, err := agent.Consul.Health().Service(Name, "", true, nil)
			return err == nil && len(entries) == 0
		})
	})
}

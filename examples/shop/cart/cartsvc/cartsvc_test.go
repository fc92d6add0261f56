package cartsvc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wolke-platform/wolke/examples/shop/catalog/catalogsvc"
	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
)

type wireCart struct {
	Items      []item `json:"items"`
	TotalCents int    `json:"total_cents"`
}

// do sends a request as user ("" for none) and returns the status, the ETag and the
// decoded cart (or fails the test on an error answer that is not {"error": ...}).
func do(t *testing.T, method, url, user, body string, header ...string) (int, string, wireCart) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	if user != "" {
		req.Header.Set(IdentityHeader, user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var c wireCart
	if resp.StatusCode != 200 {
		var e map[string]string
		if err := json.Unmarshal(b, &e); err != nil || e["error"] == "" || len(e) != 1 {
			t.Fatalf("%s %s: %d without a JSON error: %s", method, url, resp.StatusCode, b)
		}
		return resp.StatusCode, resp.Header.Get("ETag"), c
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Items == nil {
		t.Fatalf("%s %s: not a cart: %s", method, url, b)
	}
	return resp.StatusCode, resp.Header.Get("ETag"), c
}

// lines renders a cart compactly: "id×qty,..." and the total.
func lines(c wireCart) string {
	var s []string
	for _, it := range c.Items {
		s = append(s, fmt.Sprintf("%s×%d", it.ArticleID, it.Qty))
	}
	return strings.Join(s, ",") + fmt.Sprintf(" =%d", c.TotalCents)
}

func price(id string) int {
	a, _ := shopdata.Default().Article(id)
	return a.PriceCents
}

func TestCart(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, catalogsvc.Service())
	svc := agent.Start(t, Service())
	u := svc.URL
	p1, p2, p3 := price("1"), price("2"), price("3")

	// Steps on one user's cart, in order; want is lines() of the answer.
	steps := []struct {
		name         string
		method, path string
		user, body   string
		status       int
		want         string
	}{
		{"no identity", "GET", "/cart", "", "", 401, ""},
		{"identity with a slash", "GET", "/cart", "a/b", "", 401, ""},
		{"empty", "GET", "/cart", "u1", "", 200, " =0"},
		{"add", "POST", "/cart/items", "u1", `{"article_id":"1","qty":2}`, 200, fmt.Sprintf("1×2 =%d", 2*p1)},
		{"add more of it", "POST", "/cart/items", "u1", `{"article_id":"1","qty":3}`, 200, fmt.Sprintf("1×5 =%d", 5*p1)},
		{"add another, qty defaults to 1", "POST", "/cart/items", "u1", `{"article_id":"2"}`, 200, fmt.Sprintf("1×5,2×1 =%d", 5*p1+p2)},
		{"unknown article", "POST", "/cart/items", "u1", `{"article_id":"999999","qty":1}`, 404, ""},
		{"negative qty", "POST", "/cart/items", "u1", `{"article_id":"1","qty":-1}`, 400, ""},
		{"too many at once", "POST", "/cart/items", "u1", `{"article_id":"1","qty":100}`, 400, ""},
		{"too many in all", "POST", "/cart/items", "u1", `{"article_id":"1","qty":95}`, 400, ""},
		{"no article_id", "POST", "/cart/items", "u1", `{"qty":1}`, 400, ""},
		{"not JSON", "POST", "/cart/items", "u1", `{`, 400, ""},
		{"unknown field", "POST", "/cart/items", "u1", `{"article_id":"1","price_cents":1}`, 400, ""},
		{"set qty", "PUT", "/cart/items/1", "u1", `{"qty":1}`, 200, fmt.Sprintf("1×1,2×1 =%d", p1+p2)},
		{"set an article not in the cart", "PUT", "/cart/items/3", "u1", `{"qty":4}`, 200, fmt.Sprintf("1×1,2×1,3×4 =%d", p1+p2+4*p3)},
		{"set an unknown article", "PUT", "/cart/items/999999", "u1", `{"qty":1}`, 404, ""},
		{"set without qty", "PUT", "/cart/items/1", "u1", `{}`, 400, ""},
		{"remove", "PUT", "/cart/items/2", "u1", `{"qty":0}`, 200, fmt.Sprintf("1×1,3×4 =%d", p1+4*p3)},
		{"remove what is not there", "PUT", "/cart/items/2", "u1", `{"qty":0}`, 200, fmt.Sprintf("1×1,3×4 =%d", p1+4*p3)},
		{"another user's cart is separate", "GET", "/cart", "u2", "", 200, " =0"},
		{"read back", "GET", "/cart", "u1", "", 200, fmt.Sprintf("1×1,3×4 =%d", p1+4*p3)},
		{"clear", "DELETE", "/cart", "u1", "", 200, " =0"},
		{"cleared", "GET", "/cart", "u1", "", 200, " =0"},
		{"unknown path", "GET", "/carts", "u1", "", 404, ""},
	}
	for _, st := range steps {
		status, _, c := do(t, st.method, u+st.path, st.user, st.body)
		if status != st.status || st.status == 200 && lines(c) != st.want {
			t.Fatalf("%s: %d %q, want %d %q", st.name, status, lines(c), st.status, st.want)
		}
	}

	t.Run("stored in the KV store, gone when empty", func(t *testing.T) {
		do(t, "POST", u+"/cart/items", "kvuser", `{"article_id":"7","qty":2}`)
		pair, _, err := agent.Consul.KV().Get(KeyPrefix+"kvuser", nil)
		if err != nil || pair == nil {
			t.Fatalf("no key: %v", err)
		}
		a, _ := shopdata.Default().Article("7")
		want := fmt.Sprintf(`{"items":[{"article_id":"7","name":%q,"price_cents":%d,"qty":2}]}`, a.Name, a.PriceCents)
		if string(pair.Value) != want {
			t.Fatalf("stored %s, want %s", pair.Value, want)
		}
		do(t, "PUT", u+"/cart/items/7", "kvuser", `{"qty":0}`)
		if pair, _, _ := agent.Consul.KV().Get(KeyPrefix+"kvuser", nil); pair != nil {
			t.Fatalf("an empty cart is still stored: %s", pair.Value)
		}
	})

	t.Run("If-Match on DELETE", func(t *testing.T) {
		_, etag0, _ := do(t, "GET", u+"/cart", "im", "")
		if etag0 != `"0"` {
			t.Fatalf("ETag of no cart %q", etag0)
		}
		do(t, "POST", u+"/cart/items", "im", `{"article_id":"1"}`)
		if status, _, _ := do(t, "DELETE", u+"/cart", "im", "", "If-Match", etag0); status != 412 {
			t.Fatalf("stale If-Match: %d", status)
		}
		_, etag, _ := do(t, "GET", u+"/cart", "im", "")
		do(t, "POST", u+"/cart/items", "im", `{"article_id":"2"}`) // added during "checkout"
		if status, _, _ := do(t, "DELETE", u+"/cart", "im", "", "If-Match", etag); status != 412 {
			t.Fatalf("If-Match of a changed cart: %d", status)
		}
		_, etag, _ = do(t, "GET", u+"/cart", "im", "")
		if status, _, c := do(t, "DELETE", u+"/cart", "im", "", "If-Match", etag); status != 200 || len(c.Items) != 0 {
			t.Fatalf("If-Match of the current cart: %d", status)
		}
		if status, _, _ := do(t, "DELETE", u+"/cart", "im", "", "If-Match", "garbage"); status != 400 {
			t.Fatalf("bad If-Match: %d", status)
		}
	})

	t.Run("too many articles", func(t *testing.T) {
		for i := 1; i <= MaxItems; i++ {
			if status, _, _ := do(t, "POST", u+"/cart/items", "big", fmt.Sprintf(`{"article_id":"%d"}`, i)); status != 200 {
				t.Fatalf("article %d: %d", i, status)
			}
		}
		if status, _, _ := do(t, "POST", u+"/cart/items", "big", `{"article_id":"999"}`); status != 400 {
			t.Fatalf("article %d: %d", MaxItems+1, status)
		}
	})
}

// Concurrent adds through two instances lose nothing: every add is in the result.
func TestConcurrentAddsLoseNothing(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, catalogsvc.Service())
	a := agent.Start(t, Service())
	b := agent.Start(t, Service())

	const workers, adds = 8, 5 // per worker
	articles := []string{"11", "12", "13"}
	var wg sync.WaitGroup
	errs := make(chan string, workers*adds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := []string{a.URL, b.URL}[w%2]
			for i := range adds {
				id := articles[(w+i)%len(articles)]
				req, _ := http.NewRequest("POST", base+"/cart/items", strings.NewReader(fmt.Sprintf(`{"article_id":%q,"qty":%d}`, id, 1+i%2)))
				req.Header.Set(IdentityHeader, "shared")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Sprintf("%d %s", resp.StatusCode, body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	want := map[string]int{}
	for w := range workers {
		for i := range adds {
			want[articles[(w+i)%len(articles)]] += 1 + i%2
		}
	}
	_, _, c := do(t, "GET", a.URL+"/cart", "shared", "")
	got := map[string]int{}
	total := 0
	for _, it := range c.Items {
		got[it.ArticleID] = it.Qty
		total += it.Qty * price(it.ArticleID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || c.TotalCents != total {
		t.Fatalf("cart %v (total %d), want %v (total %d)", got, c.TotalCents, want, total)
	}
}

// Without the catalog, carts can still be read and changed; only adding new
// articles fails.
func TestWithoutCatalog(t *testing.T) {
	agent := shoptest.StartAgent(t)
	cat := agent.Start(t, catalogsvc.Service())
	svc := agent.Start(t, Service())
	do(t, "POST", svc.URL+"/cart/items", "u", `{"article_id":"5","qty":2}`)
	cat.Stop(t)

	if status, _, _ := do(t, "POST", svc.URL+"/cart/items", "u", `{"article_id":"6"}`); status != 502 {
		t.Fatalf("add without the catalog: %d", status)
	}
	if status, _, c := do(t, "GET", svc.URL+"/cart", "u", ""); status != 200 || lines(c) != fmt.Sprintf("5×2 =%d", 2*price("5")) {
		t.Fatalf("read: %d %s", status, lines(c))
	}
	if status, _, c := do(t, "PUT", svc.URL+"/cart/items/5", "u", `{"qty":1}`); status != 200 || lines(c) != fmt.Sprintf("5×1 =%d", price("5")) {
		t.Fatalf("set: %d %s", status, lines(c))
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/consul/api"
)

// demo is a running `wolke demo`: the shop on a dev agent behind the gateway.
type demo struct {
	shop, agent, admin string
	cmd                *exec.Cmd
	out                *syncBuffer
}

var shopServices = []string{"accounts", "cart", "catalog", "inventory", "orders", "payments", "recommendations", "storefront"}

// startDemo runs `wolke demo` on free ports and waits until every service has its
// instances passing and the storefront answers through the gateway.
func startDemo(t *testing.T, extra ...string) *demo {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shopServices {
		if _, err := os.Stat(filepath.Join(root, "examples", "shop", s, "main.go")); err != nil {
			t.Skipf("the shop's %s service is not there yet", s)
		}
	}
	d := &demo{out: &syncBuffer{}}
	args := append([]string{"demo", "-http-addr", "127.0.0.1:0", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0",
		"-shop", filepath.Join(root, "examples", "shop")}, extra...)
	d.cmd = exec.Command(wolkeBin, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("wolke demo output:\n%s", d.out.String())
		}
	})
	urls := regexp.MustCompile(`the shop:\s+(http://\S+)/\n.*the agent:\s+http://(\S+?)/v1.*\n.*the gateway:\s+http://(\S+?)/v1`)
	deadline := time.Now().Add(4 * time.Minute) // the first build of the shop takes a while
	for {
		if m := urls.FindStringSubmatch(d.out.String()); m != nil {
			d.shop, d.agent, d.admin = m[1], m[2], m[3]
			break
		}
		select {
		case <-done:
			t.Fatalf("wolke demo exited: %s", d.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("wolke demo did not start: %s", d.out.String())
		}
	}
	c, err := api.NewClient(&api.Config{Address: d.agent})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for _, s := range shopServices {
		for {
			entries, _, err := c.Health().Service(s, "", true, nil)
			if err == nil && len(entries) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s has %d passing instances", s, len(entries))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for {
		resp, err := http.Get(d.shop + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the storefront does not answer through the gateway: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

func (d *demo) consul(t *testing.T) *api.Client {
	c, err := api.NewClient(&api.Config{Address: d.agent})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestShopInBrowser is the browser flow in headless Chromium: register, a
// department, two articles into the cart, checkout, the order; then the same with
// the recommendations service failing.
func TestShopInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium (apt-get install chromium)")
	}
	d := startDemo(t)
	for _, tc := range []struct {
		name        string
		recsFailing bool
	}{{"recommendations up", false}, {"recommendations down", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.recsFailing {
				if _, err := d.consul(t).KV().Put(&api.KVPair{Key: "config/recommendations/fail_percent", Value: []byte("100")}, nil); err != nil {
					t.Fatal(err)
				}
				defer d.consul(t).KV().Delete("config/recommendations/fail_percent", nil)
			}
			opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
				chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 1000))
			actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
			defer cancel()
			ctx, cancel := chromedp.NewContext(actx)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser
				t.Fatal(err)
			}
			ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
			defer cancel()

			css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
			step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				if err := chromedp.Do(ctx, steps...); err != nil {
					d.screenshot(t, ctx, tc.name+"-failed")
					t.Fatalf("%s: %v", what, err)
				}
			}
			text := func(sel string) string {
				t.Helper()
				v, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
				if err != nil {
					t.Fatalf("text of %s: %v", sel, err)
				}
				return strings.TrimSpace(v)
			}
			attr := func(sel, name string) string {
				t.Helper()
				v, err := chromedp.Run(ctx, chromedp.AttributeValue(css(sel), name))
				if err != nil {
					t.Fatalf("%s of %s: %v", name, sel, err)
				}
				return v.Value
			}

			email := fmt.Sprintf("shopper-%d@example.com", time.Now().UnixNano())
			step("register",
				chromedp.Navigate(d.shop+"/register"),
				chromedp.WaitVisible(css(`form#register-form`)),
				chromedp.SendKeys(css(`#name`), "Ada Shopper"),
				chromedp.SendKeys(css(`#email`), email),
				chromedp.SendKeys(css(`#password`), "correct horse battery"),
				chromedp.Click(css(`#register-button`)),
				chromedp.WaitVisible(css(`#user-name`)))
			step("browse a department",
				chromedp.Click(css(`a.nav-department`)),
				chromedp.WaitVisible(css(`#article-list .article-card`)))
			deptURL := d.location(t, ctx)
			step("first article",
				chromedp.Click(css(`#article-list .article-card a.article-link`)),
				chromedp.WaitVisible(css(`form#add-to-cart`)))
			first := attr(`#article`, "data-article-id")
			step("add it", chromedp.Click(css(`#add-to-cart-button`)), chromedp.WaitVisible(css(`table#cart`)))
			step("second article",
				chromedp.Navigate(deptURL),
				chromedp.WaitVisible(css(`#article-list .article-card`)),
				chromedp.Click(css(`#article-list .article-card:nth-of-type(2) a.article-link`)),
				chromedp.WaitVisible(css(`form#add-to-cart`)))
			second := attr(`#article`, "data-article-id")
			step("add it", chromedp.Click(css(`#add-to-cart-button`)), chromedp.WaitVisible(css(`table#cart`)))
			cartCount := text(`#cart-count`)
			step("check out",
				chromedp.Click(css(`#checkout-link`)),
				chromedp.WaitVisible(css(`form#place-order`)),
				chromedp.Click(css(`#place-order-button`)),
				chromedp.WaitVisible(css(`#order-confirmation`)))
			confirmation, orderID := text(`#order-confirmation`), text(`#order-id`)
			d.screenshot(t, ctx, tc.name)
			step("order list", chromedp.Click(css(`#orders-link`)), chromedp.WaitVisible(css(`table#orders`)))
			orders := text(`table#orders`)

			if first == "" || second == "" || first == second {
				t.Errorf("articles %q and %q: want two different ones", first, second)
			}
			if orderID == "" || confirmation == "" || !strings.Contains(orders, orderID) {
				t.Errorf("order %q, confirmation %q, order list %q", orderID, confirmation, orders)
			}
			if cartCount != "2" {
				t.Errorf("cart count before checkout %q, want 2", cartCount)
			}
			t.Logf("%s: ordered %s and %s as %s, order %s", tc.name, first, second, email, orderID)
		})
	}
}

// location is the browser's current URL.
func (d *demo) location(t *testing.T, ctx context.Context) string {
	t.Helper()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// screenshot saves the page as a test artifact (WOLKE_ARTIFACTS, or the temp dir).
func (d *demo) screenshot(t *testing.T, ctx context.Context, name string) {
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	dir := os.Getenv("WOLKE_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	file := filepath.Join(dir, "shop-"+strings.ReplaceAll(name, " ", "-")+".jpg")
	if err := os.WriteFile(file, shot, 0o644); err == nil {
		t.Logf("screenshot: %s", file)
	}
}

// TestShopChaos runs `wolke demo -chaos` (an instance killed with SIGKILL every few
// seconds, started again by the demo) under a minute of shoppers browsing article,
// department and search pages through the gateway: at least 99.9 % of the pages
// must render.
func TestShopChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load")
	}
	d := startDemo(t, "-chaos", "-chaos-every", "4s")
	dur := 60 * time.Second
	if v := os.Getenv("WOLKE_CHAOS_DURATION"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			dur = d
		}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var depts []struct{ ID string }
	resp, err := client.Get(d.shop + "/api/catalog/departments")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&depts)
	resp.Body.Close()
	if err != nil || len(depts) == 0 {
		t.Fatalf("departments: %v %v", depts, err)
	}
	paths := func(i int) string {
		switch i % 4 {
		case 0:
			return "/departments/" + depts[i/4%len(depts)].ID
		case 1:
			return fmt.Sprintf("/search?q=%s", []string{"lamp", "shirt", "ball", "pro"}[i/4%4])
		default:
			return fmt.Sprintf("/articles/%d", 1+(i*7919)%3000)
		}
	}
	type failure struct {
		at   time.Duration
		path string
		what string
	}
	var mu sync.Mutex
	var fails []failure
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Since(start) < dur; i += 8 {
				path := paths(i)
				sent.Add(1)
				resp, err := client.Get(d.shop + path)
				what := ""
				if err != nil {
					what = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						what = fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Wolke-Rejected-By"))
					}
				}
				if what != "" {
					mu.Lock()
					fails = append(fails, failure{time.Since(start).Round(time.Millisecond), path, what})
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond) // shoppers, not a benchmark: ~1,000 pages/s at most
			}
		}(w)
	}
	wg.Wait()
	n := sent.Load()
	rate := 1 - float64(len(fails))/float64(n)
	kills := strings.Count(d.out.String(), "chaos: SIGKILL")
	t.Logf("%d pages in %v with %d instances killed: %.3f%% rendered, %d failed", n, dur, kills, 100*rate, len(fails))
	for i, f := range fails {
		if i == 20 {
			break
		}
		t.Logf("  %v %s: %s", f.at, f.path, f.what)
	}
	if kills < int(dur/(8*time.Second)) {
		t.Errorf("only %d kills in %v", kills, dur)
	}
	if rate < 0.999 {
		t.Errorf("success rate %.3f%%, want ≥ 99.9%%", 100*rate)
	}
}

package inventorysvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

func coordinator(agent *shoptest.Agent, client *http.Client) *twopc.Coordinator {
	return &twopc.Coordinator{Consul: agent.Consul, Client: client, PrepareTimeout: 20 * time.Second}
}

func reserve(articleID string, qty int) twopc.Branch {
	return twopc.Branch{Name: Name, URL: ParticipantURL, Payload: Reservation{Items: []Line{{ArticleID: articleID, Qty: qty}}}}
}

func setStock(t *testing.T, agent *shoptest.Agent, articleID string, n int) {
	t.Helper()
	if _, err := agent.Consul.KV().Put(&api.KVPair{Key: StockKey(articleID), Value: []byte(strconv.Itoa(n))}, nil); err != nil {
		t.Fatal(err)
	}
}

func stockOf(t *testing.T, c *http.Client, url string) (int, Stock) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Stock
	json.NewDecoder(resp.Body).Decode(&s)
	return resp.StatusCode, s
}

func TestStock(t *testing.T) {
	agent := shoptest.StartAgent(t)
	svc := agent.Start(t, Service())
	a, _ := shopdata.Default().Article("1")
	if status, s := stockOf(t, http.DefaultClient, svc.URL+"/stock/1"); status != 200 || s != (Stock{"1", a.StockHint}) {
		t.Fatalf("GET /stock/1: %d %+v, want the stock hint %d", status, s, a.StockHint)
	}
	setStock(t, agent, "1", 7)
	if _, s := stockOf(t, http.DefaultClient, svc.URL+"/stock/1"); s.Available != 7 {
		t.Fatalf("GET /stock/1 after a change: %+v", s)
	}
	for _, id := range []string{"999999", "a%2Fb", "..", "x$"} {
		if status, _ := stockOf(t, http.DefaultClient, svc.URL+"/stock/"+id); status != 404 {
			t.Errorf("GET /stock/%s: %d, want 404", id, status)
		}
	}
}

// Two instances, 40 concurrent checkouts of one piece of an article with 10: exactly
// 10 commit, the others are refused out of stock, and the count ends at 0, not below.
func TestNeverOversold(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, Service())
	svc := agent.Start(t, Service())
	client := agent.Client(t)
	coord := coordinator(agent, client)
	setStock(t, agent, "1", 10)

	var wg sync.WaitGroup
	var mu sync.Mutex
	committed, refused := 0, 0
	for i := range 40 {
		wg.Go(func() {
			out, err := coord.Run(context.Background(), fmt.Sprintf("t%d", i), []twopc.Branch{reserve("1", 1)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if out.Committed {
				committed++
				return
			}
			ref := out.Refused(Name)
			var data OutOfStock
			if ref == nil || ref.Code != CodeOutOfStock || json.Unmarshal(ref.Data, &data) != nil || data.ArticleID != "1" {
				t.Errorf("not committed, and not refused out of stock: %+v", out)
				return
			}
			refused++
		})
	}
	wg.Wait()
	if committed != 10 || refused != 30 {
		t.Fatalf("%d committed, %d refused; want 10 and 30", committed, refused)
	}
	if _, s := stockOf(t, http.DefaultClient, svc.URL+"/stock/1"); s.Available != 0 {
		t.Fatalf("stock after selling out: %+v", s)
	}
	inv := New(agent.Consul, shopdata.Default())
	if p, err := inv.Prepared(context.Background()); err != nil || len(p) != 0 {
		t.Fatalf("still prepared: %v %v", p, err)
	}

	// An article without a key starts from its stock hint; two lines of it are one.
	a, _ := shopdata.Default().Article("2")
	out, err := coord.Run(context.Background(), "t-lazy", []twopc.Branch{{Name: Name, URL: ParticipantURL,
		Payload: Reservation{Items: []Line{{"2", 1}, {"2", 2}}}}})
	if err != nil || !out.Committed {
		t.Fatalf("reserving article 2: %+v %v", out, err)
	}
	if _, s := stockOf(t, client, "http://inventory/stock/2"); s.Available != a.StockHint-3 {
		t.Fatalf("article 2: %d available, want %d", s.Available, a.StockHint-3)
	}
	// More than there is: refused with what is left.
	out, err = coord.Run(context.Background(), "t-big", []twopc.Branch{reserve("2", a.StockHint)})
	var data OutOfStock
	if err != nil || out.Committed || json.Unmarshal(out.Refused(Name).Data, &data) != nil || data.Available != a.StockHint-3 {
		t.Fatalf("reserving too much: %+v %v", out, err)
	}
	// Nonsense is refused, not reserved.
	for i, items := range [][]Line{nil, {{"1", 0}}, {{"../x", 1}}, {{"999999", 1}}} {
		out, err := coord.Run(context.Background(), fmt.Sprintf("t-bad-%d", i), []twopc.Branch{
			{Name: Name, URL: ParticipantURL, Payload: Reservation{Items: items}}})
		if err != nil || out.Committed || out.Refused(Name) == nil {
			t.Errorf("reservation %v: %+v %v, want a refusal", items, out, err)
		}
	}
}

// refuser is a participant that always votes no.
type refuser struct{}

func (refuser) Prepare(context.Context, string, json.RawMessage) error {
	return twopc.Refuse("declined", "no", nil)
}
func (refuser) Commit(context.Context, string) error               { return errors.New("never prepared") }
func (refuser) Abort(context.Context, string) error                { return nil }
func (refuser) Prepared(context.Context) ([]twopc.Prepared, error) { return nil, nil }

// When another participant refuses, the reservation is released.
func TestAbortReleases(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, Service())
	client := agent.Client(t)
	setStock(t, agent, "5", 3)
	no := httptest.NewServer(&twopc.Server{Name: "payments", Participant: refuser{}, Consul: agent.Consul})
	t.Cleanup(no.Close)
	out, err := coordinator(agent, client).Run(context.Background(), "t1", []twopc.Branch{
		reserve("5", 2), {Name: "payments", URL: no.URL + "/twopc", Payload: 1}})
	if err != nil || out.Committed || !out.Done {
		t.Fatalf("Run: %+v %v", out, err)
	}
	if _, s := stockOf(t, client, "http://inventory/stock/5"); s.Available != 3 {
		t.Fatalf("after the abort: %d available, want 3", s.Available)
	}
	e, err := New(agent.Consul, shopdata.Default()).Get(context.Background(), "t1")
	if err != nil || e == nil || e.Status != twopc.StatusAborted {
		t.Fatalf("ledger: %+v %v", e, err)
	}
}

// A coordinator that crashes leaves a reservation prepared; the inventory settles it
// itself from the log: the sale after a logged commit, the release when no decision
// came before the deadline.
func TestInDoubtSettledByTheInventory(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, Service(), "TWOPC_IN_DOUBT_AFTER=50ms")
	client := agent.Client(t)
	inv := New(agent.Consul, shopdata.Default())
	setStock(t, agent, "1", 5)
	setStock(t, agent, "2", 5)
	crash := errors.New("crash")
	coord := &twopc.Coordinator{Consul: agent.Consul, Client: client, PrepareTimeout: 300 * time.Millisecond,
		Hooks: &twopc.Hooks{
			AfterDecision:  func(txid string, _ twopc.State) error { return crash },
			BeforeDecision: func(txid string, _ twopc.State) error { return map[string]error{"t2": crash}[txid] },
		}}
	ctx := context.Background()
	if _, err := coord.Run(ctx, "t1", []twopc.Branch{reserve("1", 2)}); !errors.Is(err, crash) {
		t.Fatalf("Run t1: %v", err)
	}
	if _, err := coord.Run(ctx, "t2", []twopc.Branch{reserve("2", 2)}); !errors.Is(err, crash) {
		t.Fatalf("Run t2: %v", err)
	}
	status := func(txid string) twopc.Status {
		e, err := inv.Get(ctx, txid)
		if err != nil || e == nil {
			return ""
		}
		return e.Status
	}
	deadline := time.Now().Add(10 * time.Second)
	for status("t1") != twopc.StatusCommitted || status("t2") != twopc.StatusAborted {
		if time.Now().After(deadline) {
			t.Fatalf("not settled: t1 %s, t2 %s", status("t1"), status("t2"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, s := stockOf(t, client, "http://inventory/stock/1"); s.Available != 3 {
		t.Fatalf("article 1 after the commit: %d, want 3", s.Available)
	}
	if _, s := stockOf(t, client, "http://inventory/stock/2"); s.Available != 5 {
		t.Fatalf("article 2 after the presumed abort: %d, want 5", s.Available)
	}
}

func TestKeyLocks(t *testing.T) {
	var k keyLocks
	var wg sync.WaitGroup
	inside := map[string]int{}
	var mu sync.Mutex
	for i := range 50 {
		wg.Go(func() {
			keys := []string{"a", "b", "c"}[i%3:]
			if i%2 == 0 {
				keys = []string{"c", "a"}
			}
			unlock := k.lock(keys)
			mu.Lock()
			for _, key := range keys {
				if inside[key]++; inside[key] > 1 {
					t.Errorf("two holders of %s", key)
				}
			}
			mu.Unlock()
			runtime.Gosched()
			mu.Lock()
			for _, key := range keys {
				inside[key]--
			}
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	if len(k.m) != 0 {
		t.Fatalf("entries left: %v", k.m)
	}
}

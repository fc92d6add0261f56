package orderssvc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/cart/cartsvc"
	"github.com/wolke-platform/wolke/examples/shop/catalog/catalogsvc"
	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
	"github.com/wolke-platform/wolke/examples/shop/inventory/inventorysvc"
	"github.com/wolke-platform/wolke/examples/shop/payments/paymentssvc"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// shop runs the services a checkout needs, for real and in-process: catalog, cart,
// inventory, payments and orders, n instances of each of the last three.
type shop struct {
	agent  *shoptest.Agent
	client *http.Client // finds the services in the catalog
}

func startShop(t *testing.T, n int, env ...string) *shop {
	t.Helper()
	agent := shoptest.StartAgent(t)
	agent.Start(t, catalogsvc.Service())
	agent.Start(t, cartsvc.Service())
	for range n {
		agent.Start(t, inventorysvc.Service())
		agent.Start(t, paymentssvc.Service())
		agent.Start(t, Service(), env...)
	}
	return &shop{agent: agent, client: agent.Client(t)}
}

// do sends a request as user ("" for none) to url and decodes the JSON answer into out
// (unless nil); it returns the status.
func (s *shop) do(t *testing.T, method, url, user string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set(IdentityHeader, user)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

func (s *shop) addToCart(t *testing.T, user, articleID string, qty int) {
	t.Helper()
	if status := s.do(t, "POST", "http://cart/cart/items", user, map[string]any{"article_id": articleID, "qty": qty}, nil); status != 200 {
		t.Fatalf("adding %s to the cart: %d", articleID, status)
	}
}

func (s *shop) cart(t *testing.T, user string) cart {
	t.Helper()
	var c cart
	if status := s.do(t, "GET", "http://cart/cart", user, nil, &c); status != 200 {
		t.Fatalf("GET /cart: %d", status)
	}
	return c
}

func (s *shop) stock(t *testing.T, articleID string) int {
	t.Helper()
	var st inventorysvc.Stock
	if status := s.do(t, "GET", "http://inventory/stock/"+articleID, "", nil, &st); status != 200 {
		t.Fatalf("GET /stock/%s: %d", articleID, status)
	}
	return st.Available
}

func (s *shop) setStock(t *testing.T, articleID string, n int) {
	t.Helper()
	if _, err := s.agent.Consul.KV().Put(&api.KVPair{Key: inventorysvc.StockKey(articleID), Value: []byte(strconv.Itoa(n))}, nil); err != nil {
		t.Fatal(err)
	}
}

// settled fails the test if any participant still holds a prepared transaction.
func (s *shop) settled(t *testing.T) {
	t.Helper()
	for _, prefix := range []string{inventorysvc.KeyPrefix, paymentssvc.KeyPrefix, KeyPrefix} {
		l := &twopc.Ledger{Consul: s.agent.Consul, Prefix: prefix}
		if p, err := l.Prepared(context.Background()); err != nil || len(p) != 0 {
			t.Errorf("%s: still prepared: %v %v", prefix, p, err)
		}
	}
}

type errorAnswer struct {
	Error     string `json:"error"`
	ArticleID string `json:"article_id"`
}

func TestCheckout(t *testing.T) {
	s := startShop(t, 1)
	data := shopdata.Default()
	a1, _ := data.Article("1")
	a2, _ := data.Article("2")

	if status := s.do(t, "POST", "http://orders/checkout", "", nil, nil); status != 401 {
		t.Fatalf("checkout without identity: %d, want 401", status)
	}
	var e errorAnswer
	if status := s.do(t, "POST", "http://orders/checkout", "u1", nil, &e); status != 400 || e.Error == "" {
		t.Fatalf("checkout of an empty cart: %d %+v, want 400", status, e)
	}

	s.addToCart(t, "u1", "1", 2)
	s.addToCart(t, "u1", "2", 1)
	var o Order
	if status := s.do(t, "POST", "http://orders/checkout", "u1", nil, &o); status != 201 {
		t.Fatalf("checkout: %d %+v", status, o)
	}
	want := int64(2*a1.PriceCents + a2.PriceCents)
	if o.Status != Confirmed || o.User != "u1" || o.TotalCents != want || len(o.Items) != 2 || o.Created.IsZero() {
		t.Fatalf("order %+v, want confirmed for u1 with 2 lines and %d cents", o, want)
	}
	if c := s.cart(t, "u1"); len(c.Items) != 0 {
		t.Fatalf("the cart after the checkout: %+v", c)
	}
	if n := s.stock(t, "1"); n != a1.StockHint-2 {
		t.Fatalf("stock of 1: %d, want %d", n, a1.StockHint-2)
	}
	var p paymentssvc.Payment
	if status := s.do(t, "GET", "http://payments/payments/"+o.ID, "", nil, &p); status != 200 || p.Status != paymentssvc.Captured || p.AmountCents != want || p.OrderID != o.ID {
		t.Fatalf("payment: %d %+v", status, p)
	}

	var got Order
	if status := s.do(t, "GET", "http://orders/orders/"+o.ID, "u1", nil, &got); status != 200 || got.ID != o.ID || got.Status != Confirmed || got.TotalCents != want {
		t.Fatalf("GET /orders/%s: %d %+v", o.ID, status, got)
	}
	for _, tc := range []struct{ user, id string }{{"u2", o.ID}, {"u1", "o-nope"}, {"u1", "a%20b"}} {
		if status := s.do(t, "GET", "http://orders/orders/"+tc.id, tc.user, nil, nil); status != 404 {
			t.Errorf("GET /orders/%s as %s: %d, want 404", tc.id, tc.user, status)
		}
	}

	// A second order comes first in the list.
	s.addToCart(t, "u1", "2", 3)
	var o2 Order
	if status := s.do(t, "POST", "http://orders/checkout", "u1", nil, &o2); status != 201 {
		t.Fatalf("second checkout: %d", status)
	}
	var list []Order
	if status := s.do(t, "GET", "http://orders/orders", "u1", nil, &list); status != 200 || len(list) != 2 || list[0].ID != o2.ID || list[1].ID != o.ID {
		t.Fatalf("GET /orders: %d %+v, want the two orders newest first", status, list)
	}
	if list[1].Status != Confirmed || list[1].TotalCents != want {
		t.Fatalf("listed order %+v", list[1])
	}
	var none []Order
	if status := s.do(t, "GET", "http://orders/orders", "u2", nil, &none); status != 200 || none == nil || len(none) != 0 {
		t.Fatalf("GET /orders of a user without orders: %d %v, want []", status, none)
	}
	s.settled(t)
}

// Out of stock: 409 with the article; declined: 402. Either way nothing is kept: the
// stock is back, the payment voided, no order, and the cart as it was.
func TestCheckoutRefused(t *testing.T) {
	s := startShop(t, 1)
	s.setStock(t, "3", 1)
	s.addToCart(t, "u1", "1", 1)
	s.addToCart(t, "u1", "3", 2)
	var e errorAnswer
	if status := s.do(t, "POST", "http://orders/checkout", "u1", nil, &e); status != 409 || e.ArticleID != "3" || e.Error == "" {
		t.Fatalf("checkout of 2 pieces of an article with 1: %d %+v, want 409 naming article 3", status, e)
	}
	a1, _ := shopdata.Default().Article("1")
	if s.stock(t, "3") != 1 || s.stock(t, "1") != a1.StockHint {
		t.Fatalf("stock after the refusal: 3: %d, 1: %d", s.stock(t, "3"), s.stock(t, "1"))
	}
	if c := s.cart(t, "u1"); len(c.Items) != 2 {
		t.Fatalf("the cart after a refused checkout: %+v", c)
	}

	if _, err := s.agent.Consul.KV().Put(&api.KVPair{Key: "config/payments/" + paymentssvc.KeyDeclinePercent, Value: []byte("100")}, nil); err != nil {
		t.Fatal(err)
	}
	s.do(t, "PUT", "http://cart/cart/items/3", "u1", map[string]int{"qty": 1}, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		status := s.do(t, "POST", "http://orders/checkout", "u1", nil, &e)
		if status == 402 {
			break
		}
		if status != 201 || time.Now().After(deadline) {
			t.Fatalf("checkout at decline_percent=100: %d %+v, want 402", status, e)
		}
		// Committed before payments saw the new value: fill the cart again.
		s.addToCart(t, "u1", "1", 1)
		s.addToCart(t, "u1", "3", 1)
		s.setStock(t, "3", 1)
	}
	if s.stock(t, "3") != 1 {
		t.Fatalf("stock after the declined payment: %d, want 1", s.stock(t, "3"))
	}
	if c := s.cart(t, "u1"); len(c.Items) != 2 {
		t.Fatalf("the cart after a declined checkout: %+v", c)
	}
	var list []Order
	s.do(t, "GET", "http://orders/orders", "u1", nil, &list)
	for _, o := range list {
		if o.Status != Confirmed {
			t.Fatalf("an order that did not go through is listed: %+v", o)
		}
	}
	s.settled(t)
}

// Two instances of each participant, twelve shoppers after the five pieces of one
// article: five orders, seven 409s, and the article is sold out, not oversold.
func TestConcurrentCheckouts(t *testing.T) {
	s := startShop(t, 2)
	s.setStock(t, "4", 5)
	const shoppers = 12
	for i := range shoppers {
		s.addToCart(t, fmt.Sprintf("u%d", i), "4", 1)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range shoppers {
		wg.Go(func() {
			status := s.do(t, "POST", "http://orders/checkout", fmt.Sprintf("u%d", i), nil, nil)
			mu.Lock()
			codes[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[201] != 5 || codes[409] != shoppers-5 {
		t.Fatalf("answers %v, want 5 × 201 and %d × 409", codes, shoppers-5)
	}
	if n := s.stock(t, "4"); n != 0 {
		t.Fatalf("stock after the rush: %d, want 0", n)
	}
	orders := 0
	for i := range shoppers {
		var list []Order
		s.do(t, "GET", "http://orders/orders", fmt.Sprintf("u%d", i), nil, &list)
		orders += len(list)
	}
	if orders != 5 {
		t.Fatalf("%d orders, want 5", orders)
	}
	s.settled(t)
}

// A coordinator that crashes after the decision, and one that crashes before it: the
// orders instance holding twopc/leader finishes both, the first to a confirmed order
// with the stock sold and the payment captured, the second to nothing (presumed
// abort).
func TestRecoveryOfCrashedCheckouts(t *testing.T) {
	s := startShop(t, 1, "TWOPC_PREPARE_TIMEOUT=300ms", "TWOPC_RECOVER_EVERY=50ms")
	s.setStock(t, "5", 10)
	crash := errors.New("crash")
	coord := &twopc.Coordinator{Consul: s.agent.Consul, Client: s.client, PrepareTimeout: 300 * time.Millisecond,
		Hooks: &twopc.Hooks{
			AfterDecision:  func(txid string, _ twopc.State) error { return crash },
			BeforeDecision: func(txid string, _ twopc.State) error { return map[string]error{"o-2": crash}[txid] },
		}}
	branches := func(id string, qty int) []twopc.Branch {
		o := Order{ID: id, User: "u1", Items: []Item{{ArticleID: "5", Name: "five", PriceCents: 100, Qty: qty}}, TotalCents: int64(100 * qty), Created: time.Now()}
		return []twopc.Branch{
			{Name: inventorysvc.Name, URL: inventorysvc.ParticipantURL, Payload: inventorysvc.Reservation{Items: []inventorysvc.Line{{ArticleID: "5", Qty: qty}}}},
			{Name: paymentssvc.Name, URL: paymentssvc.ParticipantURL, Payload: paymentssvc.Authorization{User: "u1", OrderID: id, AmountCents: o.TotalCents}},
			{Name: Name, URL: ParticipantURL, Payload: o},
		}
	}
	ctx := context.Background()
	for _, tx := range []struct {
		id  string
		qty int
	}{{"o-1", 2}, {"o-2", 3}} {
		if _, err := coord.Run(ctx, tx.id, branches(tx.id, tx.qty)); !errors.Is(err, crash) {
			t.Fatalf("Run %s: %v, want the crash", tx.id, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := twopc.ReadLog(ctx, s.agent.Consul, "")
		done := err == nil && len(recs) == 2
		for _, r := range recs {
			done = done && r.State == twopc.Done
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log is not done after 10s: %+v %v", recs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var list []Order
	s.do(t, "GET", "http://orders/orders", "u1", nil, &list)
	if len(list) != 1 || list[0].ID != "o-1" || list[0].Status != Confirmed {
		t.Fatalf("after recovery: %+v, want o-1 confirmed only", list)
	}
	if n := s.stock(t, "5"); n != 8 {
		t.Fatalf("stock after recovery: %d, want 8 (2 sold, 3 released)", n)
	}
	var p paymentssvc.Payment
	if s.do(t, "GET", "http://payments/payments/o-1", "", nil, &p); p.Status != paymentssvc.Captured {
		t.Fatalf("payment of o-1: %+v", p)
	}
	if s.do(t, "GET", "http://payments/payments/o-2", "", nil, &p); p.Status != paymentssvc.Voided {
		t.Fatalf("payment of o-2: %+v", p)
	}
	s.settled(t)
}

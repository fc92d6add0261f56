package paymentssvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/examples/shop/internal/shoptest"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

func authorize(user string, cents int64) twopc.Branch {
	return twopc.Branch{Name: Name, URL: ParticipantURL, Payload: Authorization{User: user, OrderID: "o1", AmountCents: cents}}
}

func payment(t *testing.T, c *http.Client, id string) (int, Payment) {
	t.Helper()
	resp, err := c.Get("http://payments/payments/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Payment
	json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p
}

// refuser is a participant that always votes no.
type refuser struct{}

func (refuser) Prepare(context.Context, string, json.RawMessage) error {
	return twopc.Refuse("out_of_stock", "no", nil)
}
func (refuser) Commit(context.Context, string) error               { return errors.New("never prepared") }
func (refuser) Abort(context.Context, string) error                { return nil }
func (refuser) Prepared(context.Context) ([]twopc.Prepared, error) { return nil, nil }

func TestCaptureAndVoid(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, Service())
	client := agent.Client(t)
	coord := &twopc.Coordinator{Consul: agent.Consul, Client: client, PrepareTimeout: 10 * time.Second}
	ctx := context.Background()

	out, err := coord.Run(ctx, "t1", []twopc.Branch{authorize("u1", 1234)})
	if err != nil || !out.Committed {
		t.Fatalf("Run: %+v %v", out, err)
	}
	if status, p := payment(t, client, "t1"); status != 200 || p.Status != Captured || p.AmountCents != 1234 || p.User != "u1" || p.ID != "t1" {
		t.Fatalf("GET /payments/t1: %d %+v", status, p)
	}

	no := httptest.NewServer(&twopc.Server{Name: "inventory", Participant: refuser{}, Consul: agent.Consul})
	t.Cleanup(no.Close)
	out, err = coord.Run(ctx, "t2", []twopc.Branch{{Name: "inventory", URL: no.URL + "/twopc", Payload: 1}, authorize("u1", 99)})
	if err != nil || out.Committed || !out.Done {
		t.Fatalf("Run: %+v %v", out, err)
	}
	if status, p := payment(t, client, "t2"); status != 200 || p.Status != Voided {
		t.Fatalf("GET /payments/t2: %d %+v", status, p)
	}

	for i, a := range []Authorization{{User: "u1", AmountCents: 0}, {User: "", AmountCents: 5}, {User: "u", AmountCents: MaxAmountCents + 1}} {
		out, err := coord.Run(ctx, fmt.Sprintf("bad%d", i), []twopc.Branch{{Name: Name, URL: ParticipantURL, Payload: a}})
		if err != nil || out.Committed || out.Refused(Name) == nil || out.Refused(Name).Code != CodeInvalid {
			t.Errorf("authorization %+v: %+v %v, want refused invalid", a, out, err)
		}
	}
	for _, id := range []string{"nope", "bad0", "a%20b"} {
		if status, _ := payment(t, client, id); status != 404 {
			t.Errorf("GET /payments/%s: %d, want 404", id, status)
		}
	}
}

// config/payments/decline_percent declines authorizations while the service runs.
func TestDeclinePercent(t *testing.T) {
	agent := shoptest.StartAgent(t)
	agent.Start(t, Service())
	client := agent.Client(t)
	coord := &twopc.Coordinator{Consul: agent.Consul, Client: client, PrepareTimeout: 10 * time.Second}
	ctx := context.Background()
	put := func(v string) {
		if _, err := agent.Consul.KV().Put(&api.KVPair{Key: "config/payments/" + KeyDeclinePercent, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	run := func() *twopc.Outcome {
		n++
		out, err := coord.Run(ctx, fmt.Sprintf("t%d", n), []twopc.Branch{authorize("u", 100)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := run(); !out.Committed {
		t.Fatalf("declined by default: %+v", out)
	}
	put("100")
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := run()
		if !out.Committed {
			if r := out.Refused(Name); r == nil || r.Code != CodeDeclined {
				t.Fatalf("not committed, not declined: %+v", out)
			}
			if status, _ := payment(t, client, fmt.Sprintf("t%d", n)); status != 404 {
				t.Fatalf("a declined payment was recorded: %d", status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("decline_percent=100 not applied within 5s")
		}
	}
	for range 5 {
		if out := run(); out.Committed {
			t.Fatal("committed at decline_percent=100")
		}
	}
	put("0")
	deadline = time.Now().Add(5 * time.Second)
	for out := run(); !out.Committed; out = run() {
		if time.Now().After(deadline) {
			t.Fatal("decline_percent=0 not applied within 5s")
		}
	}
}

package agent

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestTxnAllOrNothing(t *testing.T) {
	c := clientFor(t, startDev(t))
	txn := c.Txn()
	ok, resp, _, err := txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "a", Value: []byte("1")}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "b", Value: []byte("2")}},
		{KV: &api.KVTxnOp{Verb: api.KVGet, Key: "a"}},
	}, nil)
	if err != nil || !ok || len(resp.Results) != 3 || string(resp.Results[2].KV.Value) != "1" || resp.Results[0].KV.Value != nil {
		t.Fatalf("txn: %v %v %+v", ok, err, resp)
	}
	a := resp.Results[0].KV
	// A stale CAS fails the whole transaction: c must not be written.
	ok, resp, _, err = txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "c", Value: []byte("3")}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "a", Value: []byte("x"), Index: a.ModifyIndex + 100}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || !strings.Contains(resp.Errors[0].What, "stale") {
		t.Fatalf("failing txn: %v %v %+v", ok, err, resp)
	}
	if p, _, _ := c.KV().Get("c", nil); p != nil {
		t.Fatal("a failed transaction applied an earlier operation")
	}
	// Read-only: answered without Raft, with an index.
	ok, resp, meta, err := txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: "a", Index: a.ModifyIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVGetTree, Key: ""}},
		{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: "c"}},
	}, nil)
	if err != nil || !ok || len(resp.Results) != 3 || meta.LastIndex == 0 {
		t.Fatalf("read-only txn: %v %v %+v %+v", ok, err, resp, meta)
	}
	// Locks inside a transaction.
	sess, _, err := c.Session().Create(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, _, err = txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: "leader", Value: []byte("me"), Session: sess}},
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: "leader", Session: sess}},
		{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: "b", Index: resp.Results[1].KV.ModifyIndex + 1000}},
	}, nil)
	if err != nil || ok {
		t.Fatalf("txn with a stale delete-cas must fail: %v %v", ok, err)
	}
	if p, _, _ := c.KV().Get("leader", nil); p != nil {
		t.Fatal("the lock of a failed transaction was taken")
	}
}

func TestTxnBadInput(t *testing.T) {
	a := startDev(t)
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"get","Key":"k"}},`, 129), ",") + "]"
	cases := []struct {
		method, body string
		code         int
		reason       string
	}{
		{"PUT", many, 413, "too many operations"},
		{"PUT", `[{"KV":{"Verb":"explode","Key":"k"}}]`, 400, "unknown KV verb"},
		{"PUT", `[{"Node":{"Verb":"set"}}]`, 400, "only KV operations"},
		{"PUT", `[{"KV":{"Verb":"set","Key":"/abs"}}]`, 400, "must not begin"},
		{"PUT", `[{"KV":{"Verb":"lock","Key":"k"}}]`, 400, "needs a Session"},
		{"PUT", `not json`, 400, "parse body"},
		{"PUT", `[]`, 400, "no operations"},
		{"GET", ``, 405, "not allowed"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, "http://"+a.HTTPAddr()+"/v1/txn", strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := new(strings.Builder)
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.reason) {
			t.Errorf("%s %.40s: %d %q, want %d %q", tc.method, tc.body, resp.StatusCode, b.String(), tc.code, tc.reason)
		}
	}
}

// TestTxnTransfersKeepTheSum moves money between accounts from concurrent clients with
// check-index guarded transactions, while a reader sums all accounts in read-only
// transactions: every sum must be the total, at every point.
func TestTxnTransfersKeepTheSum(t *testing.T) {
	a := startDev(t)
	c := clientFor(t, a)
	const accounts, total = 8, 8000
	for i := 0; i < accounts; i++ {
		c.KV().Put(&api.KVPair{Key: fmt.Sprintf("acct/%d", i), Value: []byte(strconv.Itoa(total / accounts))}, nil)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed, conflicts := 0, 0
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; n < 40; n++ {
				from, to := r.IntN(accounts), r.IntN(accounts)
				if from == to {
					continue
				}
				fp, _, err1 := c.KV().Get(fmt.Sprintf("acct/%d", from), nil)
				tp, _, err2 := c.KV().Get(fmt.Sprintf("acct/%d", to), nil)
				if err1 != nil || err2 != nil {
					t.Error(err1, err2)
					return
				}
				fv, _ := strconv.Atoi(string(fp.Value))
				tv, _ := strconv.Atoi(string(tp.Value))
				amt := r.IntN(50)
				ok, _, _, err := c.Txn().Txn(api.TxnOps{
					{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: fp.Key, Value: []byte(strconv.Itoa(fv - amt)), Index: fp.ModifyIndex}},
					{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: tp.Key, Value: []byte(strconv.Itoa(tv + amt)), Index: tp.ModifyIndex}},
				}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ok {
					committed++
				} else {
					conflicts++
				}
				mu.Unlock()
			}
		}(w)
	}
	done := make(chan struct{})
	sums := 0
	go func() {
		defer close(done)
		for {
			ok, resp, _, err := c.Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVGetTree, Key: "acct/"}}}, nil)
			if err != nil || !ok {
				t.Errorf("read-only txn: %v %v", ok, err)
				return
			}
			sum := 0
			for _, r := range resp.Results {
				v, _ := strconv.Atoi(string(r.KV.Value))
				sum += v
			}
			if sum != total {
				t.Errorf("a reader saw the accounts sum to %d, not %d", sum, total)
				return
			}
			sums++
			mu.Lock()
			finished := committed+conflicts >= 6*40-accounts*6
			mu.Unlock()
			if finished {
				return
			}
		}
	}()
	wg.Wait()
	<-done
	if committed < 50 || conflicts == 0 {
		t.Fatalf("%d transfers committed, %d conflicts: the test did not exercise contention", committed, conflicts)
	}
	t.Logf("%d transfers, %d conflicts, %d consistent sums read", committed, conflicts, sums)
}

package twopc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/pkg/chassis/twopc"
)

// Three participants of a checkout, as the shop has them, built on Ledger with their
// state in the KV store: stock (a CAS on each article's count), payments (an
// authorization) and orders (a pending order).

type item struct {
	ID  string `json:"id"`
	Qty int    `json:"qty"`
}

// stock reserves articles: prepare takes the quantities off the counts at
// <prefix>count/<id>, commit keeps them off (a sale), abort puts them back. One value
// is one instance of the service: it queues its own changes of an article (mu), so
// that CAS conflicts happen between instances only, as they would with the shop's
// inventory.
type stock struct {
	*twopc.Ledger
	prefix string
	mu     keyLocks
	tries  *atomic.Int64 // reservations computed, retries after a conflict included
}

// keyLocks are mutexes by key, locked in sorted order.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (k *keyLocks) lock(items []item) (unlock func()) {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	slices.Sort(ids)
	var held []*sync.Mutex
	for _, id := range ids {
		k.mu.Lock()
		if k.m == nil {
			k.m = map[string]*sync.Mutex{}
		}
		m := k.m[id]
		if m == nil {
			m = &sync.Mutex{}
			k.m[id] = m
		}
		k.mu.Unlock()
		m.Lock()
		held = append(held, m)
	}
	return func() {
		for _, m := range held {
			m.Unlock()
		}
	}
}

func (s *stock) countKey(id string) string { return s.prefix + "count/" + id }

// counts reads the counts of the items' articles, value and ModifyIndex, in one
// read-only KV transaction.
func (s *stock) counts(ctx context.Context, items []item) ([]int, []uint64, error) {
	ops := make(api.TxnOps, len(items))
	for i, it := range items {
		ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.countKey(it.ID)}}
	}
	ok, resp, _, err := s.Consul.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("reading counts: %v", resp.Errors)
	}
	byKey := map[string]*api.KVPair{}
	for _, r := range resp.Results {
		if r.KV != nil {
			byKey[r.KV.Key] = r.KV
		}
	}
	n := make([]int, len(items))
	idx := make([]uint64, len(items))
	for i, it := range items {
		kv := byKey[s.countKey(it.ID)]
		if kv == nil || kv.ModifyIndex == 0 {
			return nil, nil, fmt.Errorf("no article %s", it.ID)
		}
		if n[i], err = strconv.Atoi(string(kv.Value)); err != nil {
			return nil, nil, err
		}
		idx[i] = kv.ModifyIndex
	}
	return n, idx, nil
}

func (s *stock) casOps(items []item, counts []int, idx []uint64, sign int) api.TxnOps {
	ops := make(api.TxnOps, len(items))
	for i, it := range items {
		v := strconv.Itoa(counts[i] + sign*it.Qty)
		ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.countKey(it.ID), Value: []byte(v), Index: idx[i]}}
	}
	return ops
}

func (s *stock) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	var items []item
	if err := json.Unmarshal(payload, &items); err != nil {
		return err
	}
	defer s.mu.lock(items)()
	return s.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		s.tries.Add(1)
		counts, idx, err := s.counts(ctx, items)
		if err != nil {
			return nil, nil, err
		}
		for i, it := range items {
			if counts[i] < it.Qty {
				return nil, nil, twopc.Refuse("out_of_stock", "article "+it.ID+" is out of stock", map[string]string{"article_id": it.ID})
			}
		}
		return items, s.casOps(items, counts, idx, -1), nil
	})
}

func (s *stock) Commit(ctx context.Context, txid string) error {
	return s.Ledger.Commit(ctx, txid, nil)
}

func (s *stock) Abort(ctx context.Context, txid string) error {
	return s.Ledger.Abort(ctx, txid, func(ctx context.Context, e *twopc.Entry) (api.TxnOps, error) {
		var items []item
		if err := e.Decode(&items); err != nil {
			return nil, err
		}
		defer s.mu.lock(items)() // held for the reads only: the CAS guards the rest
		counts, idx, err := s.counts(ctx, items)
		if err != nil {
			return nil, err
		}
		return s.casOps(items, counts, idx, +1), nil
	})
}

// payment authorizes on prepare (or declines), captures on commit, voids on abort.
type payment struct{ *twopc.Ledger }

type payRequest struct {
	Amount  int  `json:"amount"`
	Decline bool `json:"decline"`
}

func (p *payment) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	var req payRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return err
	}
	return p.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		if req.Decline {
			return nil, nil, twopc.Refuse("declined", "the card was declined", nil)
		}
		return req, nil, nil
	})
}

func (p *payment) Commit(ctx context.Context, txid string) error {
	return p.Ledger.Commit(ctx, txid, nil)
}

func (p *payment) Abort(ctx context.Context, txid string) error {
	return p.Ledger.Abort(ctx, txid, nil)
}

// order writes a pending order on prepare, confirms it on commit, drops it on abort.
type order struct{ *twopc.Ledger }

func (o *order) Prepare(ctx context.Context, txid string, payload json.RawMessage) error {
	return o.Ledger.Prepare(ctx, txid, func(ctx context.Context) (any, api.TxnOps, error) {
		return payload, nil, nil
	})
}

func (o *order) Commit(ctx context.Context, txid string) error {
	return o.Ledger.Commit(ctx, txid, nil)
}

func (o *order) Abort(ctx context.Context, txid string) error {
	return o.Ledger.Abort(ctx, txid, nil)
}

package cartsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
)

// cart is a cart as stored at KeyPrefix + user.
type cart struct {
	Items []item `json:"items"`
}

// item is one line of a cart.
type item struct {
	ArticleID  string `json:"article_id"`
	Name       string `json:"name"`
	PriceCents int    `json:"price_cents"`
	Qty        int    `json:"qty"`
}

// find returns the index of the article's line, or -1.
func (c *cart) find(articleID string) int {
	for i, it := range c.Items {
		if it.ArticleID == articleID {
			return i
		}
	}
	return -1
}

var (
	// errChanged: the cart is not the one the caller's If-Match names.
	errChanged = errors.New("the cart changed since it was read")
	// errContention: too many concurrent changes to one cart in a row.
	errContention = errors.New("cart: too many concurrent changes, try again")
)

// maxAttempts bounds the read-change-CAS rounds of one change. Each lost round means
// another change succeeded, so only a cart under a storm of changes gets here.
const maxAttempts = 50

// store keeps the carts in the KV store.
type store struct{ kv *api.KV }

// get returns the user's cart and its KV index (0: none).
func (s *store) get(ctx context.Context, user string) (cart, uint64, error) {
	pair, _, err := s.kv.Get(KeyPrefix+user, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return cart{}, 0, fmt.Errorf("cart: reading: %w", err)
	}
	if pair == nil {
		return cart{}, 0, nil
	}
	var c cart
	if err := json.Unmarshal(pair.Value, &c); err != nil {
		return cart{}, 0, fmt.Errorf("cart: stored cart of %s: %v", user, err)
	}
	return c, pair.ModifyIndex, nil
}

// update applies change to the user's cart and stores the result with a CAS on the
// index it read, starting over (re-reading) when the cart changed in between. An
// error of change is returned as it is, and nothing is stored. A cart left empty is
// deleted.
func (s *store) update(ctx context.Context, user string, change func(*cart) error) (cart, error) {
	key := KeyPrefix + user
	for attempt := 0; attempt < maxAttempts; attempt++ {
		c, index, err := s.get(ctx, user)
		if err != nil {
			return cart{}, err
		}
		if err := change(&c); err != nil {
			return cart{}, err
		}
		var ok bool
		switch {
		case len(c.Items) == 0 && index == 0:
			return c, nil
		case len(c.Items) == 0:
			ok, _, err = s.kv.DeleteCAS(&api.KVPair{Key: key, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
		default:
			b, _ := json.Marshal(c)
			ok, _, err = s.kv.CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
		}
		if err != nil {
			return cart{}, fmt.Errorf("cart: writing: %w", err)
		}
		if ok {
			return c, nil
		}
		// Lost the race: back off a little (jittered, growing) so that the writers
		// spread out, then read the winner's cart.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt+1, 10))))
		select {
		case <-ctx.Done():
			return cart{}, ctx.Err()
		case <-time.After(d):
		}
	}
	return cart{}, errContention
}

// clear deletes the user's cart; with index, only if the cart is still at that
// index (errChanged otherwise; index 0 means "no cart").
func (s *store) clear(ctx context.Context, user string, index *uint64) error {
	key := KeyPrefix + user
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if index == nil {
		if _, err := s.kv.Delete(key, wo); err != nil {
			return fmt.Errorf("cart: deleting: %w", err)
		}
		return nil
	}
	if *index == 0 {
		// "No cart": fine if there still is none.
		_, now, err := s.get(ctx, user)
		if err != nil {
			return err
		}
		if now != 0 {
			return errChanged
		}
		return nil
	}
	ok, _, err := s.kv.DeleteCAS(&api.KVPair{Key: key, ModifyIndex: *index}, wo)
	if err != nil {
		return fmt.Errorf("cart: deleting: %w", err)
	}
	if !ok {
		return errChanged
	}
	return nil
}

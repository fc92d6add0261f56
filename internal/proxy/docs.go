package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// DocPrefix is where a service's policy document lives in the KV store:
// wolke/gateway/routes/<service>, a JSON Policy applied over the defaults and the
// configuration file, under the service's tags.
const DocPrefix = "wolke/gateway/routes/"

// gatewayPrefix holds everything the gateway follows in the KV store: the policy
// documents and the documents they name (OpenAPI under wolke/gateway/openapi/). API
// keys below it have their own store.
const gatewayPrefix = "wolke/gateway/"

// DocStatus is the state of one policy document, for the admin API.
type DocStatus struct {
	Service     string `json:"service"`
	ModifyIndex uint64 `json:"modify_index"`
	Valid       bool   `json:"valid"`
	Error       string `json:"error,omitempty"`
	// InForce is the ModifyIndex of the version being applied (0: none), which is an
	// older one when the newest is invalid.
	InForce uint64 `json:"in_force"`
}

type doc struct {
	raw     json.RawMessage // the version in force
	index   uint64
	status  DocStatus
	checked Policy // raw applied to DefaultPolicy, validated
}

// ParseDoc checks a policy document as the gateway would: strict JSON (unknown fields
// are errors) over the default policy, then Validate. `wolke proxy validate` uses it.
func ParseDoc(b []byte) (Policy, error) {
	p := DefaultPolicy()
	if err := strictUnmarshal(b, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// watchDocs follows the policy documents with blocking queries until ctx ends.
func (p *Proxy) watchDocs(ctx context.Context, kv *api.KV) {
	var index uint64
	fails := 0
	for {
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute, AllowStale: true}).WithContext(ctx)
		pairs, meta, err := kv.List(gatewayPrefix, opts)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fails++
			d := min(100*time.Millisecond<<min(fails, 6), 5*time.Second)
			d = d/2 + rand.N(d/2+1)
			p.log.Warn("watching gateway policy documents failed; retrying", "err", err, "retry_in", d)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		fails = 0
		if meta.LastIndex < index {
			index = 0
		} else {
			index = max(meta.LastIndex, 1)
		}
		if changed := p.applyDocs(pairs); len(changed) > 0 {
			for _, name := range changed {
				p.applyService(name)
			}
			p.rebuild()
		}
	}
}

// applyDocs takes the current documents and returns the services whose policy
// changed. An invalid document is logged and reported, and the previous valid one
// stays in force, so a typo never takes a route's protection away.
func (p *Proxy) applyDocs(pairs api.KVPairs) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	var changed []string
	// Documents referenced by policies (OpenAPI): a change re-applies the services
	// whose validation names the key.
	others := map[string][]byte{}
	for _, kv := range pairs {
		if strings.HasPrefix(kv.Key, DocPrefix) || strings.HasPrefix(kv.Key, gatewayPrefix+"apikeys/") {
			continue
		}
		others[kv.Key] = kv.Value
	}
	for key, val := range others {
		if old, ok := p.kvDocs[key]; !ok || !bytes.Equal(old, val) {
			p.kvDocs[key] = val
			changed = append(changed, p.servicesUsing(key)...)
		}
	}
	for key := range p.kvDocs {
		if _, ok := others[key]; !ok {
			delete(p.kvDocs, key)
			changed = append(changed, p.servicesUsing(key)...)
		}
	}
	for _, kv := range pairs {
		if !strings.HasPrefix(kv.Key, DocPrefix) {
			continue
		}
		name := strings.TrimPrefix(kv.Key, DocPrefix)
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		seen[name] = true
		cur := p.docs[name]
		if cur != nil && cur.status.ModifyIndex == kv.ModifyIndex {
			continue
		}
		pol, err := ParseDoc(kv.Value)
		if err != nil {
			p.log.Error("gateway policy document rejected; the previous one stays in force",
				"service", name, "key", kv.Key, "index", kv.ModifyIndex, "err", err)
			if cur == nil {
				cur = &doc{}
				p.docs[name] = cur
			}
			cur.status = DocStatus{Service: name, ModifyIndex: kv.ModifyIndex, Error: err.Error(), InForce: cur.index}
			continue
		}
		p.docs[name] = &doc{raw: append(json.RawMessage(nil), kv.Value...), index: kv.ModifyIndex, checked: pol,
			status: DocStatus{Service: name, ModifyIndex: kv.ModifyIndex, Valid: true, InForce: kv.ModifyIndex}}
		p.log.Info("gateway policy document applied", "service", name, "index", kv.ModifyIndex)
		changed = append(changed, name)
	}
	for name := range p.docs {
		if !seen[name] {
			delete(p.docs, name)
			changed = append(changed, name)
		}
	}
	return changed
}

// servicesUsing lists the services whose policy names the KV key: an OpenAPI
// document, or a JWKS document (a route whose keys were missing was closed; it opens
// when they appear). p.mu is held.
func (p *Proxy) servicesUsing(key string) []string {
	var out []string
	for name, s := range p.services {
		st := s.state.Load()
		if st == nil {
			continue
		}
		pol := st.policy
		if (pol.Validation != nil && pol.Validation.OpenAPI == key) ||
			(pol.Auth != nil && pol.Auth.JWT != nil && pol.Auth.JWT.JWKSKey == key && st.broken != "") {
			out = append(out, name)
		}
	}
	return out
}

// DocStatuses lists the policy documents and whether each is in force.
func (p *Proxy) DocStatuses() []DocStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]DocStatus, 0, len(p.docs))
	for _, d := range p.docs {
		out = append(out, d.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// docPolicy applies a service's document over base.
func (p *Proxy) docPolicy(name string, base Policy) (Policy, error) {
	d := p.docs[name]
	if d == nil || d.raw == nil {
		return base, nil
	}
	if err := strictUnmarshal(d.raw, &base); err != nil {
		return base, fmt.Errorf("policy document: %w", err)
	}
	return base, nil
}

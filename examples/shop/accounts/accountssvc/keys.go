package accountssvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// signingKey is the shared RSA key tokens are signed with.
type signingKey struct {
	kid  string // the RFC 7638 thumbprint of the public key
	priv *rsa.PrivateKey
	jwk  jwk // the public half
}

// storedKey is the signing key's form in the KV store.
type storedKey struct {
	Kid        string    `json:"kid"`
	Created    time.Time `json:"created"`
	PrivateKey string    `json:"private_key"` // PKCS #8, PEM
}

// jwk is an RSA public key as a JSON Web Key (RFC 7517, 7518).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// jwks is a JWKS document. Keys are kept raw so that keys of other kinds, put there
// by someone else, survive a merge unchanged.
type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

// keyBits is the signing key's size; internal/authn refuses RSA keys under 2048 bits.
const keyBits = 2048

// loadOrCreateKey returns the signing key in the KV store, creating it if there is
// none. Instances starting at once each generate a key, but the CAS on index 0
// lets only the first write win; the others read the winner's.
func loadOrCreateKey(ctx context.Context, kv *api.KV) (*signingKey, error) {
	var mine *signingKey
	var minePair *api.KVPair
	for attempt := 0; ; attempt++ {
		pair, _, err := kv.Get(KeySigningKey, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err == nil && pair != nil {
			return parseStoredKey(pair.Value)
		}
		if err == nil {
			if mine == nil {
				if mine, minePair, err = newSigningKey(); err != nil {
					return nil, err
				}
			}
			var ok bool
			if ok, _, err = kv.CAS(minePair, (&api.WriteOptions{}).WithContext(ctx)); err == nil && ok {
				return mine, nil
			}
			// Another instance was first (or the write failed): read again.
		}
		if err != nil && attempt >= 20 {
			return nil, fmt.Errorf("signing key %s: %w", KeySigningKey, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("signing key %s: %w", KeySigningKey, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
}

// newSigningKey generates a key and its KV pair (to be created with a CAS on index 0).
func newSigningKey() (*signingKey, *api.KVPair, error) {
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, nil, err
	}
	k := fromPrivate(priv)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(storedKey{
		Kid:        k.kid,
		Created:    time.Now().UTC(),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	if err != nil {
		return nil, nil, err
	}
	return k, &api.KVPair{Key: KeySigningKey, Value: b, ModifyIndex: 0}, nil
}

func parseStoredKey(b []byte) (*signingKey, error) {
	var s storedKey
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("signing key %s: %v", KeySigningKey, err)
	}
	block, _ := pem.Decode([]byte(s.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block", KeySigningKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %v", KeySigningKey, err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok || priv.N.BitLen() < keyBits {
		return nil, fmt.Errorf("signing key %s: not an RSA key of %d bits", KeySigningKey, keyBits)
	}
	return fromPrivate(priv), nil
}

func fromPrivate(priv *rsa.PrivateKey) *signingKey {
	b64 := base64.RawURLEncoding.EncodeToString
	n, e := b64(priv.N.Bytes()), b64(big.NewInt(int64(priv.E)).Bytes())
	// RFC 7638: the SHA-256 of the required members in lexicographic order, no spaces.
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	kid := b64(sum[:])
	return &signingKey{kid: kid, priv: priv, jwk: jwk{Kty: "RSA", Kid: kid, Alg: "RS256", Use: "sig", N: n, E: e}}
}

// publisher keeps the signing key's public half in the JWKS document at KeyJWKS.
type publisher struct {
	kv  *api.KV
	key *signingKey
	log *slog.Logger
	doc atomic.Pointer[[]byte] // the document last read or written, served by GET /.well-known/jwks.json
}

func newPublisher(kv *api.KV, key *signingKey, log *slog.Logger) *publisher {
	p := &publisher{kv: kv, key: key, log: log}
	b, _ := json.Marshal(map[string][]jwk{"keys": {key.jwk}})
	p.doc.Store(&b)
	return p
}

// document returns the JWKS document to serve.
func (p *publisher) document() []byte { return *p.doc.Load() }

// publish makes sure the document at KeyJWKS holds the key, adding it to the keys
// already there (with a CAS, so a concurrent change is not lost). A document that
// is not a key set is replaced.
func (p *publisher) publish(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		pair, _, err := p.kv.Get(KeyJWKS, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err == nil {
			var index uint64
			var value []byte
			if pair != nil {
				index, value = pair.ModifyIndex, pair.Value
			}
			doc, changed := p.merge(value)
			if !changed {
				p.doc.Store(&value)
				return nil
			}
			var ok bool
			ok, _, err = p.kv.CAS(&api.KVPair{Key: KeyJWKS, Value: doc, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
			if err == nil && ok {
				p.doc.Store(&doc)
				p.log.Info("published the signing key", "key", KeyJWKS, "kid", p.key.kid)
				return nil
			}
		}
		if err != nil && attempt >= 20 {
			return fmt.Errorf("publishing %s: %w", KeyJWKS, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publishing %s: %w", KeyJWKS, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
}

// merge returns the document with the key in it, and whether that differs from doc.
func (p *publisher) merge(doc []byte) ([]byte, bool) {
	var set jwks
	if len(doc) > 0 && json.Unmarshal(doc, &set) != nil {
		set.Keys = nil // not a key set: replace it
	}
	mine, _ := json.Marshal(p.key.jwk)
	out := jwks{Keys: []json.RawMessage{mine}}
	found := false
	for _, raw := range set.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) == nil && k.Kid == p.key.kid {
			if k == p.key.jwk {
				found = true
			}
			continue // ours, possibly mangled: ours goes first
		}
		out.Keys = append(out.Keys, raw)
	}
	if found && doc != nil {
		return doc, false
	}
	b, _ := json.Marshal(out)
	return b, !bytes.Equal(b, doc)
}

// keepPublished watches the JWKS document with blocking queries and publishes the key
// again whenever it goes missing (the document was deleted or overwritten, or the
// agent lost its data), until ctx ends.
func (p *publisher) keepPublished(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		pair, meta, err := p.kv.Get(KeyJWKS, (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("watching the JWKS document", "key", KeyJWKS, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		if meta.LastIndex < index {
			index = 0 // the store went back (a new agent): start over
		} else {
			index = meta.LastIndex
		}
		var value []byte
		if pair != nil {
			value = pair.Value
		}
		if _, changed := p.merge(value); !changed {
			p.doc.Store(&value)
			continue
		}
		if err := p.publish(ctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Warn("republishing the signing key", "key", KeyJWKS, "err", err)
		}
	}
}

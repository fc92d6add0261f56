package authn

import (
	"crypto/sha256"
	"encoding/base64"
	"sync"

	"github.com/valyala/fasthttp"
	"golang.org/x/crypto/bcrypt"
)

// basicAuth checks HTTP Basic credentials against bcrypt hashes.
//
// bcrypt is slow by design (tens of milliseconds), too slow for every request of a
// busy client, so credentials that passed are remembered, by the SHA-256 of
// "user:password", for the Authenticator's life (which ends when the route's policy
// changes, and with it the users). Failures are not remembered: guessing stays slow.
type basicAuth struct {
	realm string
	users map[string][]byte
	dummy []byte // compared against for unknown users, so they take as long as known ones

	mu     sync.Mutex
	passed map[[32]byte]string // sha256(user:password) -> user
}

const basicCacheMax = 1024

func newBasicAuth(p BasicPolicy) *basicAuth {
	b := &basicAuth{realm: p.Realm, users: make(map[string][]byte, len(p.Users)), passed: make(map[[32]byte]string)}
	if b.realm == "" {
		b.realm = DefaultRealm
	}
	cost := bcrypt.DefaultCost
	for u, h := range p.Users {
		b.users[u] = []byte(h)
		if c, err := bcrypt.Cost([]byte(h)); err == nil {
			cost = c
		}
	}
	// The dummy hash has the users' cost; its password is never compared equal.
	b.dummy, _ = bcrypt.GenerateFromPassword([]byte("wolke: no such user"), cost)
	return b
}

func (b *basicAuth) challenge() string {
	return `Basic realm="` + b.realm + `", charset="UTF-8"`
}

func (b *basicAuth) authenticate(req *fasthttp.Request) (Result, bool) {
	cred, ok := authScheme(req.Header.Peek(fasthttp.HeaderAuthorization), "Basic")
	if !ok {
		return Result{}, false
	}
	var buf [256]byte
	n := base64.StdEncoding.DecodedLen(len(cred))
	if n > len(buf) {
		return unauthorized(b.challenge(), "basic credentials too long"), true
	}
	n, err := base64.StdEncoding.Decode(buf[:], cred)
	if err != nil {
		return unauthorized(b.challenge(), "basic credentials are not base64"), true
	}
	raw := buf[:n]
	colon := -1
	for i, c := range raw {
		if c == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return unauthorized(b.challenge(), "basic credentials lack the ':'"), true
	}
	sum := sha256.Sum256(raw)
	b.mu.Lock()
	user, hit := b.passed[sum]
	b.mu.Unlock()
	if hit {
		return Result{OK: true, Identity: user}, true
	}
	user = string(raw[:colon])
	hash, known := b.users[user]
	if !known {
		hash = b.dummy
	}
	if bcrypt.CompareHashAndPassword(hash, raw[colon+1:]) != nil || !known {
		return unauthorized(b.challenge(), "invalid user name or password"), true
	}
	b.mu.Lock()
	if len(b.passed) >= basicCacheMax {
		clear(b.passed)
	}
	b.passed[sum] = user
	b.mu.Unlock()
	return Result{OK: true, Identity: user}, true
}

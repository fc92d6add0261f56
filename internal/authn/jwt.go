package authn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
)

// acceptedAlgs are the only signature algorithms accepted; "none" never is.
var acceptedAlgs = []string{"HS256", "RS256", "ES256"}

// Key selection errors, reported as the reason of a 401.
var (
	errUnknownKid  = errors.New("authn: no key with the token's kid")
	errKeyMismatch = errors.New("authn: the key with the token's kid is not of the token's alg")
	errNoKeyForAlg = errors.New("authn: no key for the token's alg")
	errBadKid      = errors.New("authn: kid is not a string")
)

// jwtAuth checks bearer tokens.
type jwtAuth struct {
	pol    JWTPolicy
	kv     KVReader
	now    func() time.Time
	leeway time.Duration
	idClm  string
	parser *jwt.Parser
	cache  *tokenCache
	realm  string // the bare challenge

	mu   sync.Mutex // serializes key set loads
	keys atomic.Pointer[keyState]
}

// keyState is a key set and its generation, which tells cached verdicts apart.
type keyState struct {
	ks    *keySet
	gen   uint64
	index uint64 // the KV index it was read at
	raw   []byte // the document from the KV store
}

func newJWTAuth(p JWTPolicy, d Deps) (*jwtAuth, error) {
	j := &jwtAuth{
		pol:    p,
		kv:     d.KV,
		now:    d.Now,
		leeway: time.Duration(p.Leeway),
		idClm:  p.IdentityClaim,
		cache:  newTokenCache(),
		realm:  `Bearer realm="` + DefaultRealm + `"`,
	}
	if j.leeway == 0 {
		j.leeway = DefaultLeeway
	}
	if j.idClm == "" {
		j.idClm = DefaultIdentityClaim
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(acceptedAlgs),
		jwt.WithLeeway(j.leeway),
		jwt.WithTimeFunc(d.Now),
		jwt.WithExpirationRequired(),
		jwt.WithJSONNumber(),
	}
	if p.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(p.Issuer))
	}
	if len(p.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(p.Audience...))
	}
	j.parser = jwt.NewParser(opts...)
	if p.JWKSFile != "" {
		if err := j.loadFile(); err != nil {
			return nil, err
		}
		return j, nil
	}
	if d.KV == nil {
		return nil, errors.New("auth.jwt: jwks_key needs the KV store (Deps.KV)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := j.fetchKV(ctx, 0); err != nil {
		return nil, err
	}
	return j, nil
}

// setKeys installs a new key set, making every cached verdict stale.
func (j *jwtAuth) setKeys(ks *keySet, index uint64, raw []byte) {
	var gen uint64
	if old := j.keys.Load(); old != nil {
		gen = old.gen + 1
	}
	j.keys.Store(&keyState{ks: ks, gen: gen, index: index, raw: raw})
}

func (j *jwtAuth) loadFile() error {
	data, err := os.ReadFile(j.pol.JWKSFile)
	if err != nil {
		return fmt.Errorf("auth.jwt: jwks_file: %w", err)
	}
	ks, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("auth.jwt: jwks_file %s: %w", j.pol.JWKSFile, err)
	}
	j.mu.Lock()
	j.setKeys(ks, 0, nil)
	j.mu.Unlock()
	return nil
}

// fetchKV reads the JWKS key, waiting for a change past index. A missing key or a
// document that does not parse is an error on the first read; later, a deleted key
// empties the key set (every token is refused) and a broken document keeps the keys
// in use.
func (j *jwtAuth) fetchKV(ctx context.Context, index uint64) (uint64, error) {
	data, next, err := j.kv.Get(ctx, j.pol.JWKSKey, index)
	if err != nil {
		return 0, fmt.Errorf("auth.jwt: reading jwks_key %s: %w", j.pol.JWKSKey, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	cur := j.keys.Load()
	if cur != nil && (next == cur.index || data != nil && bytes.Equal(data, cur.raw)) {
		return next, nil // the wait ended, or another key changed
	}
	if data == nil {
		if cur != nil && len(cur.ks.keys) == 0 {
			return next, nil // still deleted
		}
		if cur == nil {
			return 0, fmt.Errorf("auth.jwt: jwks_key %s does not exist", j.pol.JWKSKey)
		}
		j.setKeys(&keySet{byKid: map[string][]int{}}, next, nil)
		return next, errors.New("jwks_key was deleted: refusing every token until it is back")
	}
	ks, err := parseJWKS(data)
	if err != nil {
		if cur == nil {
			return 0, fmt.Errorf("auth.jwt: jwks_key %s: %w", j.pol.JWKSKey, err)
		}
		// Keep the keys in use, but wait for the next change rather than retrying.
		return next, fmt.Errorf("keeping the previous keys: %w", err)
	}
	j.setKeys(ks, next, data)
	return next, nil
}

// watchKV follows the JWKS key until ctx ends.
func (j *jwtAuth) watchKV(ctx context.Context, log *slog.Logger) {
	start := j.keys.Load().index
	watch(ctx, log, "jwks "+j.pol.JWKSKey, start, func(ctx context.Context, index uint64) (uint64, error) {
		next, err := j.fetchKV(ctx, index)
		if err != nil && next != 0 {
			// The store answered, but its content is unusable: log, and wait for a change.
			log.Error("JWKS from the KV store not applied", "key", j.pol.JWKSKey, "err", err)
			return next, nil
		}
		return next, err
	})
}

func (j *jwtAuth) challenge() string { return j.realm }

func (j *jwtAuth) invalid(format string, args ...any) Result {
	reason := fmt.Sprintf(format, args...)
	return Result{Status: fasthttp.StatusUnauthorized, Reason: reason,
		Challenge: j.realm + `, error="invalid_token", error_description="` + quoteParam(reason) + `"`}
}

func (j *jwtAuth) authenticate(req *fasthttp.Request) (Result, bool) {
	cred, ok := authScheme(req.Header.Peek(fasthttp.HeaderAuthorization), "Bearer")
	if !ok {
		return Result{}, false
	}
	if len(cred) == 0 {
		return j.invalid("empty bearer token"), true
	}
	st := j.keys.Load()
	now := j.now()
	if res, ok := j.cache.get(cred, now.UnixNano(), st.gen); ok {
		return res, true
	}
	res, entry, cacheable := j.verify(string(cred), st)
	if cacheable {
		j.cache.put(cred, entry, now.UnixNano())
	}
	return res, true
}

// verify checks a token the cache does not know; cacheable is true for verdicts that
// hold until the token expires (success, and 403 for a missing claim).
func (j *jwtAuth) verify(tok string, st *keyState) (Result, cacheEntry, bool) {
	claims := jwt.MapClaims{}
	token, err := j.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		return keyFor(st.ks, t)
	})
	if err != nil {
		return j.invalid("%s", jwtReason(token, err, claims)), cacheEntry{}, false
	}
	id, ok := claimString(claims[j.idClm])
	if !ok || id == "" {
		return j.invalid("token has no %s claim", j.idClm), cacheEntry{}, false
	}
	e := cacheEntry{gen: st.gen, notBefore: math.MinInt64, notAfter: math.MaxInt64}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		e.notAfter = exp.Add(j.leeway).UnixNano()
	}
	if nbf, err := claims.GetNotBefore(); err == nil && nbf != nil {
		e.notBefore = nbf.Add(-j.leeway).UnixNano()
	}
	e.res = Result{OK: true, Identity: id, Claims: claims}
	for name, want := range j.pol.RequiredClaims {
		if !hasClaim(claims[name], want) {
			reason := "token lacks the required claim " + name
			e.res = Result{Status: fasthttp.StatusForbidden, Identity: id, Claims: claims, Reason: reason,
				Challenge: j.realm + `, error="insufficient_scope", error_description="` + quoteParam(reason) + `"`}
			break
		}
	}
	return e.res, e, true
}

// keyFor picks the keys that may have signed t.
func keyFor(ks *keySet, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	raw, hasKid := t.Header["kid"]
	kid, isString := raw.(string)
	if hasKid && !isString {
		return nil, errBadKid
	}
	cands := ks.candidates(alg, kid, hasKid)
	switch {
	case len(cands) == 1:
		return cands[0].key, nil
	case len(cands) > 1:
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(cands))}
		for i, c := range cands {
			set.Keys[i] = c.key
		}
		return set, nil
	case !hasKid:
		return nil, errNoKeyForAlg
	case len(ks.byKid[kid]) > 0:
		return nil, errKeyMismatch
	}
	return nil, errUnknownKid
}

// jwtReason turns a parse error into a short reason, naming the first problem.
func jwtReason(t *jwt.Token, err error, claims jwt.MapClaims) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, errUnknownKid):
		return "unknown kid"
	case errors.Is(err, errKeyMismatch):
		return "the key named by kid does not fit the token's alg"
	case errors.Is(err, errNoKeyForAlg):
		return "no key for the token's alg"
	case errors.Is(err, errBadKid):
		return "kid is not a string"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		for _, c := range []string{"exp", "iss", "aud"} { // the claims the parser may require
			if _, ok := claims[c]; !ok {
				return "token lacks " + c
			}
		}
		return "token lacks a required claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && !slices.Contains(acceptedAlgs, t.Method.Alg()) {
			return "alg not accepted (HS256, RS256 or ES256 only)"
		}
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		if t != nil && t.Method == nil {
			return "alg not accepted (HS256, RS256 or ES256 only)"
		}
		return "token unverifiable"
	}
	return "invalid token"
}

// claimString returns a string or number claim as a string.
func claimString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// hasClaim: a string claim equal to want, or an array claim containing it.
func hasClaim(v any, want string) bool {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := claimString(e); ok && s == want {
				return true
			}
		}
		return false
	case bool:
		return (v && want == "true") || (!v && want == "false")
	}
	s, ok := claimString(v)
	return ok && s == want
}

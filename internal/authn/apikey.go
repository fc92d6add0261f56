package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/valyala/fasthttp"
)

// APIKeyPrefix is where API keys live in the KV store: one key per API key, named by
// the SHA-256 (lowercase hex) of the API key, holding an APIKey as JSON. The API key
// itself is stored nowhere.
const APIKeyPrefix = "wolke/gateway/apikeys/"

// APIKeyTokenPrefix starts every API key, so that one found in a log or a repository
// is recognisable.
const APIKeyTokenPrefix = "wk_"

// APIKey is what the KV store holds about an API key.
type APIKey struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Services limits the key to these services; empty means every service.
	Services []string `json:"services,omitempty"`
}

// NewAPIKey returns a new random API key: "wk_" and 32 random bytes, base64url.
func NewAPIKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return APIKeyTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashAPIKey returns the name an API key is stored under: its SHA-256, lowercase hex.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// APIKeyStore is the gateway's in-memory copy of the API keys in the KV store, kept
// current by a blocking query on APIKeyPrefix: a key created or revoked takes effect as
// soon as the agent answers the query. One store serves every route of a gateway.
//
// Lookups hash the presented key and look the hash up in a map, so their timing
// depends only on the hash, which tells an attacker nothing about stored keys.
// While the KV store is unreachable the last known keys stay in force.
type APIKeyStore struct {
	kv  KVReader
	log *slog.Logger

	keys  atomic.Pointer[map[[32]byte]APIKey]
	ready chan struct{} // closed after the first successful listing
	once  sync.Once
	stop  context.CancelFunc
	done  chan struct{}
}

// NewAPIKeyStore returns a store reading the agent behind client. Start it, and Close
// it when the gateway stops.
func NewAPIKeyStore(client *api.Client, logger *slog.Logger) *APIKeyStore {
	return NewAPIKeyStoreKV(NewConsulKV(client), logger)
}

// NewAPIKeyStoreKV returns a store reading kv.
func NewAPIKeyStoreKV(kv KVReader, logger *slog.Logger) *APIKeyStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &APIKeyStore{kv: kv, log: logger.With("component", "apikeys"), ready: make(chan struct{}), done: make(chan struct{})}
	empty := map[[32]byte]APIKey{}
	s.keys.Store(&empty)
	return s
}

// Start starts the watcher (once) and waits until the keys have been read or ctx ends,
// returning ctx's error in that case; the watcher keeps trying either way until Close.
// Before the first read every API key is refused.
func (s *APIKeyStore) Start(ctx context.Context) error {
	s.once.Do(func() {
		wctx, cancel := context.WithCancel(context.Background())
		s.stop = cancel
		go func() {
			defer close(s.done)
			watch(wctx, s.log, "api keys", 0, s.fetch)
		}()
	})
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the watcher and waits for it.
func (s *APIKeyStore) Close() {
	s.once.Do(func() { close(s.done) }) // never started: nothing to wait for
	if s.stop != nil {
		s.stop()
	}
	<-s.done
}

func (s *APIKeyStore) fetch(ctx context.Context, index uint64) (uint64, error) {
	values, next, err := s.kv.List(ctx, APIKeyPrefix, index)
	if err != nil {
		return 0, err
	}
	if next == index && index != 0 {
		return next, nil
	}
	m := make(map[[32]byte]APIKey, len(values))
	for k, v := range values {
		var h [32]byte
		name := strings.TrimPrefix(k, APIKeyPrefix)
		if len(name) != 64 || strings.ToLower(name) != name {
			s.log.Warn("ignoring a KV key that is not a lowercase SHA-256", "key", k)
			continue
		}
		if _, err := hex.Decode(h[:], []byte(name)); err != nil {
			s.log.Warn("ignoring a KV key that is not a lowercase SHA-256", "key", k)
			continue
		}
		var ak APIKey
		if err := json.Unmarshal(v, &ak); err != nil || ak.Name == "" || !validHeaderValue(ak.Name) {
			s.log.Warn("ignoring an API key without a valid JSON value and name", "key", k)
			continue
		}
		m[h] = ak
	}
	s.keys.Store(&m)
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	return next, nil
}

// Lookup returns the API key's record if key is a current API key.
func (s *APIKeyStore) Lookup(key []byte) (APIKey, bool) {
	ak, ok := (*s.keys.Load())[sha256.Sum256(key)]
	return ak, ok
}

// Len returns the number of keys known.
func (s *APIKeyStore) Len() int { return len(*s.keys.Load()) }

// apiKeyAuth checks API keys.
type apiKeyAuth struct {
	header  string
	store   *APIKeyStore
	service string
}

func newAPIKeyAuth(p APIKeyPolicy, d Deps) *apiKeyAuth {
	a := &apiKeyAuth{header: p.Header, store: d.APIKeys, service: d.Service}
	if a.header == "" {
		a.header = DefaultAPIKeyHeader
	}
	return a
}

func (a *apiKeyAuth) challenge() string {
	return `ApiKey realm="` + DefaultRealm + `", header="` + a.header + `"`
}

func (a *apiKeyAuth) authenticate(req *fasthttp.Request) (Result, bool) {
	key := req.Header.Peek(a.header)
	if len(key) == 0 {
		var ok bool
		if key, ok = authScheme(req.Header.Peek(fasthttp.HeaderAuthorization), "ApiKey"); !ok {
			return Result{}, false
		}
	}
	ak, ok := a.store.Lookup(key)
	if !ok {
		return unauthorized(a.challenge(), "unknown or revoked API key"), true
	}
	if len(ak.Services) > 0 && !slices.Contains(ak.Services, a.service) {
		return Result{Status: fasthttp.StatusForbidden, Identity: ak.Name,
			Reason: "API key " + ak.Name + " is not allowed for this service"}, true
	}
	return Result{OK: true, Identity: ak.Name}, true
}

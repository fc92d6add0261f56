package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/state"
)

// fakeBackend serves reads from a local store and can be told to misbehave.
type fakeBackend struct {
	store    *state.Store
	panicky  bool
	noLeader bool
}

func (f *fakeBackend) Store() *state.Store {
	if f.panicky {
		panic("boom")
	}
	return f.store
}
func (f *fakeBackend) Apply(context.Context, []byte) (any, uint64, error) {
	if f.noLeader {
		return nil, 0, consensus.ErrNoLeader
	}
	return true, 1, nil
}
func (f *fakeBackend) ReadBarrier(_ context.Context, mode Consistency) error {
	if f.noLeader && mode != Stale {
		return consensus.ErrNoLeader
	}
	return nil
}
func (f *fakeBackend) LeaderInfo() LeaderInfo               { return LeaderInfo{Known: !f.noLeader} }
func (f *fakeBackend) Servers() ([]consensus.Server, error) { return nil, nil }
func (f *fakeBackend) Self() Self                           { return Self{} }
func (f *fakeBackend) Local(bool, Consistency) bool         { return true }
func (f *fakeBackend) CanApply(context.Context) bool        { return true }
func (f *fakeBackend) Forward(http.ResponseWriter, *http.Request) {
	panic("fake backend never forwards")
}

func newTestServer(t testing.TB, b *fakeBackend) (*Server, *prometheus.Registry) {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	b.store = st
	reg := prometheus.NewRegistry()
	s, err := New(DefaultConfig(), b, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func TestPanicIsRecoveredAndAnswered500(t *testing.T) {
	b := &fakeBackend{panicky: true}
	s, reg := newTestServer(t, b)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/kv/x", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "internal error") {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
	if got := testutil.ToFloat64(s.metrics.panics); got != 1 {
		t.Fatalf("panics metric %v", got)
	}
	// The server keeps serving.
	b.panicky = false
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/kv/x", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("after panic: %d", rec.Code)
	}
	if n, _ := testutil.GatherAndCount(reg, "wolke_http_requests_total"); n == 0 {
		t.Fatal("request metrics not registered")
	}
}

func TestNoLeaderAnswers500ButStaleReadsWork(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{noLeader: true})
	cases := []struct {
		method, path string
		code         int
		body         string
	}{
		{"PUT", "/v1/kv/a", 500, "No cluster leader"},
		{"GET", "/v1/kv/a", 500, "No cluster leader"},
		{"GET", "/v1/kv/a?consistent", 500, "No cluster leader"},
		{"GET", "/v1/kv/a?stale", 404, ""},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("v")))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
		if tc.code == 404 && (rec.Header().Get("X-Consul-Knownleader") != "false" || rec.Header().Get("X-Consul-Lastcontact") == "") {
			t.Errorf("stale read headers: %v", rec.Header())
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain/key", `q"uote`, `back\slash`, "tab\tnl\n", "<html>&", "ctl\x01\x1f", "ünïcödé", "line\u2028sep\u2029", "日本"}
	for _, c := range cases {
		got := string(appendJSONString(nil, c))
		wantB, _ := json.Marshal(c)
		if want := string(wantB); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", c, got, want)
		}
	}
}

func TestHealthServiceAnswersAreShared(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{})
	st := s.backend.Store()
	tx := st.WriteTxn()
	if err := tx.CatalogRegister(5, &state.RegisterRequest{Node: state.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &state.Service{ID: "web", Service: "web", Port: 80}}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	var bodies []string
	for i := 0; i < 3; i++ {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health/service/web", nil))
		if rec.Code != 200 || rec.Header().Get("X-Consul-Index") != "5" {
			t.Fatalf("read %d: %d %v", i, rec.Code, rec.Header())
		}
		bodies = append(bodies, rec.Body.String())
	}
	if bodies[0] != bodies[2] || !strings.Contains(bodies[0], `"Port":80`) {
		t.Fatalf("answers differ: %q vs %q", bodies[0], bodies[2])
	}
	if s.shared.hits != 2 {
		t.Fatalf("%d of 3 identical reads at one index reused the answer, want 2", s.shared.hits)
	}
	// A different query (a tag) is not served the shared answer.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health/service/web?tag=v9", nil))
	if rec.Body.String() != "[]" {
		t.Fatalf("tagged read: %q", rec.Body.String())
	}
}

// TestSharedHealthAnswerFollowsEveryCommit: a non-blocking read reuses the shared
// answer only while no write has been committed since it was computed, so a write
// that changes the service (or a snapshot restore) is seen by the very next read.
func TestSharedHealthAnswerFollowsEveryCommit(t *testing.T) {
	s, _ := newTestServer(t, &fakeBackend{})
	st := s.backend.Store()
	register := func(idx uint64, node string, port int) {
		t.Helper()
		tx := st.WriteTxn()
		if err := tx.CatalogRegister(idx, &state.RegisterRequest{Node: state.Node{Node: node, Address: "10.0.0.1"},
			Service: &state.Service{ID: "web", Service: "web", Port: port}}); err != nil {
			t.Fatal(err)
		}
		tx.Commit()
	}
	read := func() (string, string) {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health/service/web", nil))
		if rec.Code != 200 {
			t.Fatalf("read: %d %s", rec.Code, rec.Body)
		}
		return rec.Header().Get("X-Consul-Index"), rec.Body.String()
	}
	register(5, "n1", 80)
	read()
	if idx, body := read(); idx != "5" || strings.Count(body, `"Port":80`) != 1 {
		t.Fatalf("index %s, body %s", idx, body)
	}
	register(6, "n1", 81) // the same instance, changed
	if idx, body := read(); idx != "6" || !strings.Contains(body, `"Port":81`) {
		t.Fatalf("after a change: index %s, body %s", idx, body)
	}
	register(7, "n2", 82) // a second instance
	if idx, body := read(); idx != "7" || !strings.Contains(body, `"Port":82`) {
		t.Fatalf("after a registration: index %s, body %s", idx, body)
	}
	// A commit that does not touch the service keeps the answer, but it is checked
	// against the service's index rather than reused blindly.
	tx := st.WriteTxn()
	if err := tx.KVSet(8, &state.KVEntry{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	hits := s.shared.hits
	if idx, _ := read(); idx != "7" || s.shared.hits != hits+1 {
		t.Fatalf("after an unrelated write: index %s, hits %d -> %d", idx, hits, s.shared.hits)
	}
}

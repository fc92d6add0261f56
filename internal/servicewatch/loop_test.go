package servicewatch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// answer is what the fake server replies to one request.
type answer struct {
	status int      // 0 = 200
	index  uint64   // X-Consul-Index
	ids    []string // instance IDs of service web
	block  bool     // hold the request until the client goes away
}

// fakeAgent serves /v1/health/service/web from a script: answer(n, index) for the
// n-th request (from 0) with WaitIndex index, recording the requested indexes.
type fakeAgent struct {
	mu     sync.Mutex
	index  []uint64
	times  []time.Time
	answer func(n int, index uint64) answer
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/health/service/web" {
		http.NotFound(w, r)
		return
	}
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	f.mu.Lock()
	n := len(f.index)
	f.index = append(f.index, idx)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	a := f.answer(n, idx)
	if a.block {
		<-r.Context().Done()
		return
	}
	if a.status != 0 && a.status != http.StatusOK {
		http.Error(w, "agent trouble", a.status)
		return
	}
	entries := []*api.ServiceEntry{}
	for _, id := range a.ids {
		entries = append(entries, &api.ServiceEntry{
			Node:    &api.Node{Node: "n1", Address: "10.0.0.1"},
			Service: &api.AgentService{ID: id, Service: "web", Port: 80},
		})
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
	_ = json.NewEncoder(w).Encode(entries)
}

// requests returns the indexes requested so far and their times.
func (f *fakeAgent) requests() ([]uint64, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.index...), append([]time.Time(nil), f.times...)
}

// startFake starts the fake agent and a watcher on it with short backoffs.
func startFake(t *testing.T, answer func(n int, index uint64) answer) (*fakeAgent, *Watcher) {
	t.Helper()
	f := &fakeAgent{answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.Wait = c, time.Second
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	w := New(cfg)
	t.Cleanup(w.Close)
	return f, w
}

// waitFor polls cond every few milliseconds until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ids(list []Instance) string {
	var s []string
	for _, in := range list {
		s = append(s, in.ID)
	}
	return strings.Join(s, ",")
}

func TestIndexGoesBackwards(t *testing.T) {
	f, w := startFake(t, func(n int, index uint64) answer {
		switch n {
		case 0:
			return answer{index: 10, ids: []string{"a"}}
		case 1:
			return answer{index: 5, ids: []string{"a"}} // went backwards
		case 2:
			return answer{index: 5, ids: []string{"a", "b"}}
		}
		return answer{block: true}
	})
	if _, err := w.Service(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "4 requests", func() bool { r, _ := f.requests(); return len(r) >= 4 })
	got, _ := f.requests()
	want := []uint64{0, 10, 0, 5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("requested indexes %v, want %v first", got, want)
		}
	}
	list, _ := w.Service(t.Context(), "web")
	if ids(list) != "a,b" {
		t.Errorf("instances %q, want a,b", ids(list))
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 5, 5},
		{5, 7, 7},
		{5, 5, 5},
		{7, 5, 0},
		{0, 0, 1},
		{3, 0, 0},
		{1, 0, 1},
	} {
		if n := nextIndex(tc.prev, tc.got); n != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.got, n, tc.want)
		}
	}
}

// A server that answers at once with the same index (it does not block), or fails,
// gets requests at the backoff's pace, not in a busy loop.
func TestNeverSpins(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer answer
	}{
		{"no progress", answer{index: 7, ids: []string{"a"}}},
		{"index 0", answer{index: 0, ids: []string{"a"}}},
		{"errors", answer{status: http.StatusInternalServerError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, w := startFake(t, func(int, uint64) answer { return tc.answer })
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			_, _ = w.Service(ctx, "web")
			waitFor(t, 3*time.Second, "8 requests", func() bool { r, _ := f.requests(); return len(r) >= 8 })
			_, times := f.requests()
			// Backoffs of at least 2.5, 5, 10, 10, ... ms (upper halves of 5..20ms)
			// from the second request on: 8 requests take at least 37.5ms. A
			// spinning loop sends them in well under 5ms.
			if d := times[7].Sub(times[0]); d < 37*time.Millisecond {
				t.Errorf("8 requests in %v: the loop spins", d)
			}
		})
	}
}

func TestServiceTimeoutReportsLastError(t *testing.T) {
	_, w := startFake(t, func(int, uint64) answer { return answer{status: http.StatusInternalServerError} })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := w.Service(ctx, "web")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "agent trouble") {
		t.Errorf("error %v: want the deadline and the last error", err)
	}
}

// Errors are retried until the agent answers.
func TestRecoversAfterErrors(t *testing.T) {
	_, w := startFake(t, func(n int, _ uint64) answer {
		switch {
		case n < 3:
			return answer{status: http.StatusServiceUnavailable}
		case n == 3:
			return answer{index: 3, ids: []string{"a"}}
		}
		return answer{block: true}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	list, err := w.Service(ctx, "web")
	if err != nil || ids(list) != "a" {
		t.Fatalf("Service() = %q, %v; want a", ids(list), err)
	}
}

// OnChange fires for changes only, not for answers with a new index and the same list.
func TestOnChangeOnlyOnChange(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	f, w := startFake(t, func(n int, _ uint64) answer {
		switch n {
		case 0, 1, 2:
			return answer{index: uint64(n + 1), ids: []string{"a"}}
		case 3:
			return answer{index: 4, ids: []string{"a", "b"}}
		}
		return answer{block: true}
	})
	w.OnChange(func(service string, list []Instance) {
		mu.Lock()
		seen = append(seen, service+":"+ids(list))
		mu.Unlock()
	})
	if _, err := w.Service(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "5 requests", func() bool { r, _ := f.requests(); return len(r) >= 5 })
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seen, " "); got != "web:a web:a,b" {
		t.Errorf("OnChange calls %q, want %q", got, "web:a web:a,b")
	}
}

func TestInstances(t *testing.T) {
	entries := []*api.ServiceEntry{
		{Node: &api.Node{Node: "n2", Address: "10.0.0.2"}, Service: &api.AgentService{ID: "web-1", Service: "web", Port: 81, Weights: api.AgentWeights{Passing: 3}}},
		{Node: &api.Node{Node: "n1", Address: "10.0.0.1"}, Service: &api.AgentService{ID: "web-1", Service: "web", Address: "192.168.0.1", Port: 80, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}},
		{Node: &api.Node{Node: "n1", Address: "10.0.0.1"}, Service: &api.AgentService{ID: "web-0", Service: "web", Port: 82}},
		{Node: &api.Node{Node: "n1"}}, // no service: skipped
	}
	got := instances(entries)
	want := []Instance{
		{ID: "web-0", Service: "web", Node: "n1", Address: "10.0.0.1", Port: 82, Weight: 1},
		{ID: "web-1", Service: "web", Node: "n1", Address: "192.168.0.1", Port: 80, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}, Weight: 1},
		{ID: "web-1", Service: "web", Node: "n2", Address: "10.0.0.2", Port: 81, Weight: 3},
	}
	if !equalInstances(got, want) {
		t.Errorf("instances:\n got %+v\nwant %+v", got, want)
	}
	if id := got[2].EndpointID(); id != "n2/web-1" {
		t.Errorf("EndpointID() = %q", id)
	}
	changed := instances(entries)
	changed[1].Meta = map[string]string{"zone": "b"}
	if equalInstances(got, changed) {
		t.Error("a changed Meta compares equal")
	}
}

func TestValidate(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults with client", Config{Client: c}, true},
		{"no client", DefaultConfig(), false},
		{"negative wait", Config{Client: c, Wait: -1}, false},
		{"min above max", Config{Client: c, MinBackoff: 10 * time.Second}, false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v does not wrap ErrInvalidConfig", tc.name, err)
		}
	}
}

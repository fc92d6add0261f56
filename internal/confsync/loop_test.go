package confsync

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeEndpoint serves one blocking endpoint with scripted answers: each answer is the
// index, status and body of the next response. A request blocks (until the test moves
// on, or its wait elapses) only when the script is exhausted.
type fakeEndpoint struct {
	mu      sync.Mutex
	answers []fakeAnswer
	indexes []uint64 // the ?index of every request, in order
	more    chan struct{}
}

type fakeAnswer struct {
	index  uint64
	status int // 0: 200
	body   string
}

func newFakeEndpoint(answers ...fakeAnswer) *fakeEndpoint {
	return &fakeEndpoint{answers: answers, more: make(chan struct{}, 1)}
}

func (f *fakeEndpoint) push(a ...fakeAnswer) {
	f.mu.Lock()
	f.answers = append(f.answers, a...)
	f.mu.Unlock()
	select {
	case f.more <- struct{}{}:
	default:
	}
}

func (f *fakeEndpoint) requestIndexes() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.indexes...)
}

func (f *fakeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	f.mu.Lock()
	f.indexes = append(f.indexes, idx)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		if len(f.answers) > 0 {
			a := f.answers[0]
			f.answers = f.answers[1:]
			f.mu.Unlock()
			w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
			w.Header().Set("X-Consul-KnownLeader", "true")
			w.Header().Set("X-Consul-LastContact", "0")
			if a.status != 0 && a.status != http.StatusOK {
				http.Error(w, a.body, a.status)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, a.body)
			return
		}
		f.mu.Unlock()
		select {
		case <-f.more:
		case <-r.Context().Done():
			return
		}
	}
}

func fakeClient(t *testing.T, h http.Handler) *api.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String(), Scheme: "http", HttpClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kvJSON is a one-key KV answer with the value base64-encoded.
func kvJSON(value string, modify uint64) string {
	return fmt.Sprintf(`[{"Key":"k","CreateIndex":1,"ModifyIndex":%d,"Flags":0,"Value":%q}]`,
		modify, base64.StdEncoding.EncodeToString([]byte(value)))
}

// runWatch runs w until the test ends and returns the handler's calls as they come.
type call struct {
	index  uint64
	result any
}

func runWatch(t *testing.T, w *Watch) <-chan call {
	t.Helper()
	calls := make(chan call, 100)
	w.Handler = func(index uint64, result any) { calls <- call{index, result} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return calls
}

func nextCall(t *testing.T, calls <-chan call) call {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called within 5s")
		return call{}
	}
}

// expectNoCallBefore proves the absence of a call: it pushes a sentinel change and
// requires the next call to be the sentinel's.
func expectNoCallBefore(t *testing.T, f *fakeEndpoint, calls <-chan call, sentinel fakeAnswer, what string) {
	t.Helper()
	f.push(sentinel)
	c := nextCall(t, calls)
	if c.index != sentinel.index {
		t.Fatalf("%s: handler ran at index %d before the sentinel change at %d", what, c.index, sentinel.index)
	}
}

func value(t *testing.T, c call) string {
	t.Helper()
	p, ok := c.result.(*api.KVPair)
	if !ok {
		t.Fatalf("result is %T, want *api.KVPair", c.result)
	}
	if p == nil {
		return "<nil>"
	}
	return string(p.Value)
}

func TestWatchRunsOnceInitiallyThenOnlyOnChange(t *testing.T) {
	f := newFakeEndpoint(fakeAnswer{index: 5, body: kvJSON("a", 5)})
	w, err := NewWatch(fakeClient(t, f), Params{Type: "key", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	calls := runWatch(t, w)
	if c := nextCall(t, calls); c.index != 5 || value(t, c) != "a" {
		t.Fatalf("initial call: index %d value %q", c.index, value(t, c))
	}
	// The wait elapsed (same index), then a wake-up with a new index but the same data:
	// neither runs the handler.
	f.push(fakeAnswer{index: 5, body: kvJSON("a", 5)}, fakeAnswer{index: 6, body: kvJSON("a", 5)})
	expectNoCallBefore(t, f, calls, fakeAnswer{index: 7, body: kvJSON("b", 7)}, "unchanged data")
	// 0 (initial), 5 (answered 5: no change), 5 (answered 6, same data), 6 (the
	// sentinel); the loop may already have sent the next one.
	if got := f.requestIndexes(); fmt.Sprint(got[:4]) != "[0 5 5 6]" {
		t.Errorf("request indexes %v: want [0 5 5 6 ...]", got)
	}
}

func TestWatchResetsIndexThatGoesBackwards(t *testing.T) {
	f := newFakeEndpoint(
		fakeAnswer{index: 10, body: kvJSON("a", 10)},
		fakeAnswer{index: 4, body: kvJSON("a", 10)}, // e.g. a restored snapshot
		fakeAnswer{index: 4, body: kvJSON("a", 10)},
	)
	w, err := NewWatch(fakeClient(t, f), Params{Type: "key", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	calls := runWatch(t, w)
	nextCall(t, calls)
	expectNoCallBefore(t, f, calls, fakeAnswer{index: 11, body: kvJSON("b", 11)}, "index reset")
	got := f.requestIndexes()
	want := []uint64{0, 10, 0, 4}
	if len(got) < len(want) {
		t.Fatalf("request indexes %v: want %v...", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("request indexes %v: want %v... (after an index went backwards the next query must not block)", got, want)
		}
	}
}

func TestWatchTakesIndexZeroAsOne(t *testing.T) {
	f := newFakeEndpoint(fakeAnswer{index: 0, body: kvJSON("a", 1)})
	w, err := NewWatch(fakeClient(t, f), Params{Type: "key", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	calls := runWatch(t, w)
	if c := nextCall(t, calls); c.index != 1 {
		t.Fatalf("index %d, want 1", c.index)
	}
	expectNoCallBefore(t, f, calls, fakeAnswer{index: 2, body: kvJSON("b", 2)}, "after index 0")
	if got := f.requestIndexes(); got[1] != 1 {
		t.Fatalf("request indexes %v: the second query must block on index 1", got)
	}
}

func TestWatchBacksOffOnErrorsAndKeepsTheLastResult(t *testing.T) {
	f := newFakeEndpoint(fakeAnswer{index: 3, body: kvJSON("a", 3)})
	w, err := NewWatch(fakeClient(t, f), Params{Type: "key", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failures []int
	w.Backoff = func(n int) time.Duration {
		mu.Lock()
		failures = append(failures, n)
		mu.Unlock()
		return time.Millisecond
	}
	calls := runWatch(t, w)
	nextCall(t, calls)
	f.push(
		fakeAnswer{index: 3, status: 500, body: "boom"},
		fakeAnswer{index: 3, status: 500, body: "boom"},
		fakeAnswer{index: 3, status: 500, body: "boom"},
		fakeAnswer{index: 3, body: kvJSON("a", 3)}, // recovered: same data, no run
	)
	expectNoCallBefore(t, f, calls, fakeAnswer{index: 9, body: kvJSON("b", 9)}, "recovery with the same data")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(failures) != "[1 2 3]" {
		t.Errorf("backoff called with %v, want [1 2 3] (and reset after a success)", failures)
	}
	// 0 (initial), 3 (error), 0 ×2 (errors, index reset), 0 (recovery), 3 (sentinel);
	// the loop may already have sent the next one.
	if got, want := f.requestIndexes(), "[0 3 0 0 0 3]"; len(got) < 6 || fmt.Sprint(got[:6]) != want {
		t.Errorf("request indexes %v, want %s...", got, want)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 4 * time.Second}, {3, 9 * time.Second}, {7, 49 * time.Second},
		{8, time.Minute}, {9, time.Minute}, {1 << 40, time.Minute},
	} {
		if got := DefaultBackoff(tc.failures); got != tc.want {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestEventWatchDeliversOnlyNewEventsAndNeverResets(t *testing.T) {
	ev := (&api.Client{}).Event()
	ids := []string{
		"ffffffff-ffff-ffff-ffff-fffffffffff1", // a large index
		"00000000-0000-0000-0000-000000000002", // a small one: "backwards", yet new
		"00000000-0000-0000-0000-000000000003",
	}
	list := func(n int) string {
		s := "["
		for i := 0; i < n; i++ {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(`{"ID":%q,"Name":"deploy","Payload":null,"Version":1,"LTime":%d}`, ids[i], i+1)
		}
		return s + "]"
	}
	idx := func(n int) uint64 { return ev.IDToIndex(ids[n-1]) }
	f := newFakeEndpoint(fakeAnswer{index: idx(1), body: list(1)})
	w, err := NewWatch(fakeClient(t, f), Params{Type: "event", Name: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	calls := runWatch(t, w)
	names := func(c call) string {
		var s []string
		for _, e := range c.result.([]*api.UserEvent) {
			s = append(s, e.ID[len(e.ID)-1:])
		}
		return fmt.Sprint(s)
	}
	if c := nextCall(t, calls); names(c) != "[1]" {
		t.Fatalf("initial events %s, want [1]", names(c))
	}
	f.push(fakeAnswer{index: idx(2), body: list(2)})
	if c := nextCall(t, calls); names(c) != "[2]" {
		t.Fatalf("second events %s, want only the new one, [2]", names(c))
	}
	f.push(fakeAnswer{index: idx(3), body: list(3)})
	if c := nextCall(t, calls); names(c) != "[3]" {
		t.Fatalf("third events %s, want [3]", names(c))
	}
	for i, got := range f.requestIndexes() {
		if i > 0 && got == 0 {
			t.Fatalf("request %d had index 0: an event index must never be reset (%v)", i, f.requestIndexes())
		}
	}
}

func TestNewWatchParams(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		ok   bool
		name string
	}{
		{Params{Type: "key", Key: "a"}, true, "key a"},
		{Params{Type: "key"}, false, ""},
		{Params{Type: "key", Key: "a", Prefix: "b"}, false, ""},
		{Params{Type: "keyprefix", Prefix: "a/"}, true, "keyprefix a/"},
		{Params{Type: "keyprefix"}, false, ""},
		{Params{Type: "services"}, true, "services"},
		{Params{Type: "services", Service: "x"}, false, ""},
		{Params{Type: "nodes"}, true, "nodes"},
		{Params{Type: "service", Service: "web", Tags: []string{"v1"}, PassingOnly: true}, true, "service web"},
		{Params{Type: "service"}, false, ""},
		{Params{Type: "checks"}, true, "checks"},
		{Params{Type: "checks", State: "critical"}, true, "checks in state critical"},
		{Params{Type: "checks", State: "bogus"}, false, ""},
		{Params{Type: "checks", Service: "web", State: "any"}, false, ""},
		{Params{Type: "event"}, true, "events"},
		{Params{Type: "event", Name: "deploy"}, true, "event deploy"},
		{Params{Type: "event", Key: "k"}, false, ""},
		{Params{Type: ""}, false, ""},
		{Params{Type: "connect_roots"}, false, ""},
	} {
		w, err := NewWatch(&api.Client{}, tc.p)
		if tc.ok != (err == nil) {
			t.Errorf("%+v: error %v, want ok=%v", tc.p, err, tc.ok)
			continue
		}
		if err == nil && w.Name != tc.name {
			t.Errorf("%+v: name %q, want %q", tc.p, w.Name, tc.name)
		}
	}
}

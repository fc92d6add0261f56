package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// eventLines decodes JSON-lines output of `event list` and `event watch`.
func eventLines(t testing.TB, out string) []api.UserEvent {
	t.Helper()
	var evs []api.UserEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e api.UserEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// waitUntil polls cond every few milliseconds until it holds or d passes.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var eventIDLine = regexp.MustCompile(`^Event ID: ([0-9a-f-]{36})\n$`)

// fireCLI runs `wolke event fire` and returns the event ID it printed.
func fireCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out := mustCLI(t, stdin, append([]string{"event", "fire"}, args...)...)
	m := eventIDLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("fire printed %q", out)
	}
	return m[1]
}

func TestEventFireAndListCLI(t *testing.T) {
	addr := startKVAgent(t)
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // ID -> payload
		fireCLI(t, "", "-http-addr", addr, "deploy", "v1.2.3"):               "v1.2.3",
		fireCLI(t, "from stdin", "-http-addr", addr, "deploy", "-"):          "from stdin",
		fireCLI(t, "", "-http-addr", addr, "-node", ".", "deploy", "@"+file): "from a file",
	}
	// A service filter that matches none of this agent's services: not delivered here.
	fireCLI(t, "", "-http-addr", addr, "-service", "api", "-tag", "v1", "deploy")
	fireCLI(t, "", "-http-addr", addr, "other")

	var evs []api.UserEvent
	waitUntil(t, 5*time.Second, "the events in the list", func() bool {
		evs = eventLines(t, mustCLI(t, "", "event", "list", "-http-addr", addr, "-name", "deploy"))
		return len(evs) == len(want)
	})
	for _, e := range evs {
		p, ok := want[e.ID]
		if !ok || string(e.Payload) != p || e.Name != "deploy" {
			t.Fatalf("listed %+v; fired %v", e, want)
		}
	}
	if all := eventLines(t, mustCLI(t, "", "event", "list", "-http-addr", addr)); len(all) != len(want)+1 {
		t.Fatalf("list without -name: %d events", len(all))
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"event", "fire", "-http-addr", addr, "-node", "web-(", "x"}, 1, "Invalid node filter"},
		{[]string{"event", "fire", "-http-addr", addr, "x", strings.Repeat("p", 600)}, 1, "413"},
		{[]string{"event", "fire", "-http-addr", addr, "-tag", "v1", "x"}, 2, "-tag needs -service"},
		{[]string{"event", "fire", "-http-addr", addr}, 2, "missing NAME"},
		{[]string{"event", "list", "-http-addr", addr, "extra"}, 2, "too many arguments"},
		{[]string{"event", "watch", "-http-addr", addr, "extra"}, 2, "too many arguments"},
		{[]string{"event", "nope"}, 2, "unknown event subcommand"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("wolke %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.stderr)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// blockingQueriesAt scrapes the agent's gauge of waiting blocking queries.
func blockingQueriesAt(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^wolke_http_blocking_queries (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no wolke_http_blocking_queries in /metrics")
	}
	return string(m[1])
}

func TestEventWatchCLI(t *testing.T) {
	addr := startKVAgent(t)
	old := fireCLI(t, "", "-http-addr", addr, "deploy", "old")
	waitUntil(t, 5*time.Second, "the first event", func() bool {
		return strings.Contains(mustCLI(t, "", "event", "list", "-http-addr", addr), old)
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(normalizeArgs(root, []string{"event", "watch", "-http-addr", addr, "-name", "deploy", "-existing"}))
		root.SetIn(strings.NewReader(""))
		root.SetOut(&out)
		root.SetErr(&errOut)
		done <- root.ExecuteContext(ctx)
	}()
	// -existing prints what the agent holds; then the watch blocks.
	waitUntil(t, 5*time.Second, "the existing event", func() bool { return strings.Contains(out.String(), old) })
	waitUntil(t, 5*time.Second, "the watch to block", func() bool { return blockingQueriesAt(t, addr) == "1" })

	fired := []string{old}
	for _, p := range []string{"a", "b", "c"} {
		fired = append(fired, fireCLI(t, "", "-http-addr", addr, "deploy", p))
		fireCLI(t, "", "-http-addr", addr, "unwatched", p)
		waitUntil(t, 5*time.Second, "event "+p, func() bool { return strings.Contains(out.String(), fired[len(fired)-1]) })
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end when interrupted")
	}
	var got []string
	for _, e := range eventLines(t, out.String()) {
		got = append(got, e.ID)
		if e.Name != "deploy" {
			t.Fatalf("watch -name deploy printed %q", e.Name)
		}
	}
	if strings.Join(got, ",") != strings.Join(fired, ",") {
		t.Fatalf("watch printed %v, want %v (stderr %q)", got, fired, errOut.String())
	}
	if p := eventLines(t, out.String())[1].Payload; string(p) != "a" {
		t.Fatalf("payload %q (base64 %s)", p, base64.StdEncoding.EncodeToString(p))
	}
}

// TestEventWatcherRetriesAndResets drives the watch loop with a scripted agent: errors
// are retried with growing backoff and a non-blocking query, an index that goes
// backwards starts over from 0, and nothing is printed twice.
func TestEventWatcherRetriesAndResets(t *testing.T) {
	ev := func(id string) *api.UserEvent { return &api.UserEvent{ID: id, Name: "e"} }
	type answer struct {
		evs []*api.UserEvent
		idx uint64
		err error
	}
	script := []answer{
		{evs: []*api.UserEvent{ev("old")}, idx: 50},                   // held before: not printed
		{evs: []*api.UserEvent{ev("old"), ev("a")}, idx: 90},          // a
		{evs: []*api.UserEvent{ev("old"), ev("a"), ev("b")}, idx: 20}, // b; the index went backwards
		{evs: []*api.UserEvent{ev("old"), ev("a"), ev("b")}, idx: 20}, // after the reset: nothing new
		{err: errors.New("connection refused")},                       // retried without blocking
		{err: errors.New("connection refused")},                       // after a longer backoff
		{evs: []*api.UserEvent{ev("a"), ev("b"), ev("c")}, idx: 0},    // c; a 0 index is not reused
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var indexes []uint64
	var out, errOut bytes.Buffer
	w := eventWatcher{
		list: func(ctx context.Context, index uint64) ([]*api.UserEvent, uint64, error) {
			indexes = append(indexes, index)
			if len(script) == 0 {
				cancel()
				return nil, 0, ctx.Err()
			}
			a := script[0]
			script = script[1:]
			return a.evs, a.idx, a.err
		},
		out: &out, errOut: &errOut,
		minBackoff: time.Millisecond, maxBackoff: 2 * time.Millisecond,
	}
	if err := w.run(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eventLines(t, out.String()) {
		got = append(got, e.ID)
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("printed %v, want a,b,c", got)
	}
	want := []uint64{0, 50, 90, 0, 20, 0, 0, 1}
	if len(indexes) != len(want) {
		t.Fatalf("queried with indexes %v, want %v", indexes, want)
	}
	for i := range want {
		if indexes[i] != want[i] {
			t.Fatalf("queried with indexes %v, want %v", indexes, want)
		}
	}
	if e := errOut.String(); strings.Count(e, "retrying in") != 2 || !strings.Contains(e, "retrying in 1ms") ||
		!strings.Contains(e, "retrying in 2ms") {
		t.Fatalf("stderr %q: want retries after 1ms, then 2ms", e)
	}
}

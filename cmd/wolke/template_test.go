package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// templateFixture is a template, its destination and a reload command that appends a
// line to a file per run.
type templateFixture struct {
	src, dst, reloads string
}

func newTemplateFixture(t *testing.T, text string) templateFixture {
	t.Helper()
	dir := t.TempDir()
	f := templateFixture{
		src:     filepath.Join(dir, "app.tmpl"),
		dst:     filepath.Join(dir, "out", "app.conf"),
		reloads: filepath.Join(dir, "reloads"),
	}
	if err := os.WriteFile(f.src, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// spec is the -template value, with a reload command that records the file's content
// as one line ("|" for its newlines).
func (f templateFixture) spec() string {
	return fmt.Sprintf("%s:%s:tr '\\n' '|' < '%s' >> '%s'; echo >> '%s'", f.src, f.dst, f.dst, f.reloads, f.reloads)
}

func (f templateFixture) content(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.dst)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reloadRuns returns what the reload command saw, one entry per run.
func (f templateFixture) reloadRuns(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.reloads)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	runs := strings.SplitAfter(string(b), "\n")
	return runs[:len(runs)-1] // the part after the last newline: "" or a run still writing
}

// waitRendered waits until the destination holds want and the reload command has run
// reloads times in all, and fails if it ran more often.
func (f templateFixture) waitRendered(t *testing.T, d time.Duration, want string, reloads int) {
	t.Helper()
	watchWaitFor(t, d, fmt.Sprintf("%q rendered and reload %d", want, reloads), func() bool {
		return f.content(t) == want && len(f.reloadRuns(t)) >= reloads
	})
	if runs := f.reloadRuns(t); len(runs) != reloads {
		t.Fatalf("reload ran %d times, want %d: %q", len(runs), reloads, runs)
	}
}

// Watch and template: a change to a key re-renders the file within 1 s and runs the
// reload command exactly once per change burst.
func TestTemplateRerendersWithinOneSecondAndReloadsOncePerBurst(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	// Concurrent writes may dial connections that end up unused in the pool; the agent's
	// drain waits 5 s for such connections, so close them before it stops.
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	kv := c.KV()
	put := func(v string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "app/port", Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("8000")
	f := newTemplateFixture(t, `port={{ key "app/port" }} mode={{ keyOrDefault "app/mode" "dev" }}`)
	const wait = 300 * time.Millisecond
	_, stderr := startWolke(t, "template", "-http-addr", addr, "-wait", wait.String()+":3s", "-template", f.spec())
	defer func() {
		if t.Failed() {
			t.Logf("wolke template stderr:\n%s", stderr.String())
		}
	}()

	// The first render is not delayed by -wait; it writes the file and reloads once.
	f.waitRendered(t, 5*time.Second, "port=8000 mode=dev", 1)

	// One change: rendered within 1 s (here -wait's 300 ms of calm, plus the query).
	start := time.Now()
	put("8001")
	f.waitRendered(t, time.Second, "port=8001 mode=dev", 2)
	t.Logf("one change rendered after %v", time.Since(start).Round(time.Millisecond))

	// A burst of 5 changes, written at once (well within -wait's 300 ms of calm):
	// one render, one reload, with the last value.
	var wg sync.WaitGroup
	burstStart := time.Now()
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := kv.Put(&api.KVPair{Key: "app/port", Value: []byte(fmt.Sprint(9000 + i))}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(burstStart); took > wait/2 {
		t.Logf("the burst's writes took %v (slow machine); -wait %v may see them as separate changes", took, wait)
	}
	last, _, err := kv.Get("app/port", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "port=" + string(last.Value) + " mode=dev"
	f.waitRendered(t, 5*time.Second, want, 3)
	if runs := f.reloadRuns(t); runs[2] != want+"\n" {
		t.Errorf("the reload after the burst saw %q, want %q", runs[2], want)
	}

	// A change to another key the template reads (after the burst, as a sentinel: no
	// reload came in between) renders and reloads once more; a write of a key the
	// template does not read changes nothing.
	if _, err := kv.Put(&api.KVPair{Key: "unrelated", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(&api.KVPair{Key: "app/mode", Value: []byte("prod")}, nil); err != nil {
		t.Fatal(err)
	}
	f.waitRendered(t, 5*time.Second, "port="+string(last.Value)+" mode=prod", 4)
}

func TestTemplateWithoutWaitRendersEachChange(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	kv := kvTestClient(t, addr).KV()
	f := newTemplateFixture(t, `{{ range ls "hosts" }}{{ .Key }} {{ .Value }}
{{ end }}`)
	startWolke(t, "template", "-http-addr", addr, "-template", f.spec())
	// An empty prefix renders an empty file (ls never holds a template back).
	f.waitRendered(t, 5*time.Second, "", 1)
	for i, h := range []string{"a", "b"} {
		start := time.Now()
		if _, err := kv.Put(&api.KVPair{Key: "hosts/" + h, Value: []byte("10.0.0." + fmt.Sprint(i+1))}, nil); err != nil {
			t.Fatal(err)
		}
		want := "a 10.0.0.1\n"
		if h == "b" {
			want += "b 10.0.0.2\n"
		}
		f.waitRendered(t, time.Second, want, i+2)
		t.Logf("change %d rendered after %v", i+1, time.Since(start).Round(time.Millisecond))
	}
}

func TestTemplateOnce(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	kv := kvTestClient(t, addr).KV()
	if _, err := kv.Put(&api.KVPair{Key: "motd", Value: []byte("hello")}, nil); err != nil {
		t.Fatal(err)
	}
	f := newTemplateFixture(t, `{{ key "motd" }} from {{ env "WOLKE_TEMPLATE_TEST" }}`)
	t.Setenv("WOLKE_TEMPLATE_TEST", "wolke")
	// An existing destination keeps its mode.
	if err := os.MkdirAll(filepath.Dir(f.dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.dst, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "", "template", "-http-addr", addr, "-once", "-template", f.spec())
	if got := f.content(t); got != "hello from wolke" {
		t.Fatalf("rendered %q", got)
	}
	if fi, err := os.Stat(f.dst); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v (%v), want 0640 kept", fi.Mode().Perm(), err)
	}
	if runs := f.reloadRuns(t); len(runs) != 1 {
		t.Fatalf("reload ran %d times, want 1", len(runs))
	}
	// Nothing changed: -once again writes nothing and runs nothing.
	mustCLI(t, "", "template", "-http-addr", addr, "-once", "-template", f.spec())
	if runs := f.reloadRuns(t); len(runs) != 1 {
		t.Fatalf("reload ran %d times after an unchanged render, want 1", len(runs))
	}
	// A failing reload command is logged, not fatal.
	if _, err := kv.Put(&api.KVPair{Key: "motd", Value: []byte("bye")}, nil); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "template", "-http-addr", addr, "-once", "-template", f.src+":"+f.dst+":exit 4")
	if r.code != 0 || !strings.Contains(r.stderr, "exit_code=4") {
		t.Fatalf("failing command: exit %d, stderr %q; want 0 and the failure logged", r.code, r.stderr)
	}
}

func TestTemplateUsageErrors(t *testing.T) {
	kvClearEnv(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte("ok\n{{ key \"a\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.tmpl")
	if err := os.WriteFile(good, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := "127.0.0.1:1" // never reached: every case fails before the first query
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"template"}, "missing -template"},
		{[]string{"template", "-template", bad + ":" + filepath.Join(dir, "out")}, bad + ":2:"},
		{[]string{"template", "-template", "only-a-source"}, "SOURCE:DESTINATION"},
		{[]string{"template", "-template", good + ":o", "-wait", "3s:1s"}, "-wait"},
		{[]string{"template", "-template", good + ":o", "-wait", "soon"}, "-wait"},
		{[]string{"template", "-template", good + ":o", "-template", good + ":o"}, "both write o"},
		{[]string{"template", "-template", good + ":o", "extra"}, "unexpected argument"},
		{[]string{"template", "-template", good + ":o", "-log-level", "loud"}, "-log-level"},
	} {
		r := runCLI(t, "", append(tc.args, "-http-addr", dead)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("wolke %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	// A missing template file is a run-time error (exit 1).
	if r := runCLI(t, "", "template", "-http-addr", dead, "-once", "-template", filepath.Join(dir, "nope")+":o"); r.code != 1 {
		t.Errorf("missing template file: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
}

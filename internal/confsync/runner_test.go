package confsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTemplate writes text to a template file in dir and returns its config, rendering to
// out in the same directory.
func newTemplate(t testing.TB, dir, text, command string) TemplateConfig {
	t.Helper()
	src := filepath.Join(dir, "in.tmpl")
	if err := os.WriteFile(src, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return TemplateConfig{Source: src, Destination: filepath.Join(dir, "out"), Command: command}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// renderOnce renders text once against c and returns the output.
func renderOnce(t *testing.T, c *api.Client, text string, env map[string]string) (string, error) {
	t.Helper()
	tc := newTemplate(t, t.TempDir(), text, "")
	r, err := New(Config{Client: c, Templates: []TemplateConfig{tc}, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Once(ctx); err != nil {
		return "", err
	}
	return readFile(t, tc.Destination), nil
}

func TestTemplateKVFunctions(t *testing.T) {
	c := startAgent(t)
	for k, v := range map[string]string{
		"app/a": "1", "app/b": "2", "app/sub/c": "3", "app/folder/": "", "app-old/x": "9", "greeting": "hello",
	} {
		put(t, c, k, v)
	}
	env := map[string]string{"REGION": "eu-1"}
	for _, tc := range []struct{ name, text, want string }{
		{"key", `{{ key "greeting" }}`, "hello"},
		{"key with a leading slash", `{{ key "/greeting" }}`, "hello"},
		{"keyOrDefault of an existing key", `{{ keyOrDefault "greeting" "def" }}`, "hello"},
		{"keyOrDefault of a missing key", `{{ keyOrDefault "nope" "def" }}`, "def"},
		{"keyExists", `{{ keyExists "greeting" }} {{ keyExists "nope" }}`, "true false"},
		{"ls: direct children only, not app-old", `{{ range ls "app" }}{{ .Key }}={{ .Value }};{{ end }}`, "a=1;b=2;"},
		{"ls with a trailing slash", `{{ range ls "app/" }}{{ .Key }};{{ end }}`, "a;b;"},
		{"tree: nested keys, folders left out", `{{ range tree "app" }}{{ .Key }}={{ .Value }};{{ end }}`, "a=1;b=2;sub/c=3;"},
		{"tree Path", `{{ range tree "app/sub" }}{{ .Path }}{{ end }}`, "app/sub/c"},
		{"ls of a missing prefix", `[{{ range ls "none" }}x{{ end }}]`, "[]"},
		{"env", `{{ env "REGION" }}/{{ env "UNSET" }}`, "eu-1/"},
		{"several functions", `{{ key "app/a" }}{{ range ls "app/sub" }}{{ .Value }}{{ end }}{{ keyOrDefault "x" "-" }}`, "13-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderOnce(t, c, tc.text, env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rendered %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeCatalog serves /v1/health/service/web and /v1/catalog/services with fixed data in
// consul/api's shapes, so that service and services can be tested before the agent has
// a catalog.
func fakeCatalog(t *testing.T) (*api.Client, func() []string) {
	var mu sync.Mutex
	var queries []string
	mux := http.NewServeMux()
	headers := func(w http.ResponseWriter) {
		w.Header().Set("X-Consul-Index", "7")
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Header().Set("X-Consul-LastContact", "0")
	}
	mux.HandleFunc("/v1/health/service/web", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done() // no changes: block until the runner stops
			return
		}
		headers(w)
		entries := []string{
			`{"Node":{"ID":"n2","Node":"node2","Address":"10.0.0.2","Datacenter":"dc1"},
			  "Service":{"ID":"web-2","Service":"web","Tags":["v2"],"Address":"","Port":81},
			  "Checks":[{"CheckID":"c","Status":"warning"}]}`,
			`{"Node":{"ID":"n1","Node":"node1","Address":"10.0.0.1","Datacenter":"dc1"},
			  "Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Address":"192.168.0.1","Port":80,"Meta":{"zone":"a"}},
			  "Checks":[{"CheckID":"c","Status":"passing"}]}`,
		}
		if r.URL.Query().Has("passing") {
			entries = entries[1:]
		}
		fmt.Fprint(w, "["+strings.Join(entries, ",")+"]")
	})
	mux.HandleFunc("/v1/catalog/services", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done()
			return
		}
		headers(w)
		fmt.Fprint(w, `{"web":["v2","v1","v1"],"consul":[],"db":["primary"]}`)
	})
	return fakeClient(t, mux), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), queries...)
	}
}

func TestTemplateServiceFunctionsAgainstAFakeCatalog(t *testing.T) {
	c, queries := fakeCatalog(t)
	for _, tc := range []struct{ name, text, want string }{
		{"service: passing instances by default", `{{ range service "web" }}{{ .Node }} {{ .Address }}:{{ .Port }} {{ .Status }} {{ .ServiceMeta.zone }};{{ end }}`,
			"node1 192.168.0.1:80 passing a;"},
		{"service any: sorted by node, node address when the service has none", `{{ range service "web" "any" }}{{ .ID }}@{{ .Address }};{{ end }}`,
			"web-1@192.168.0.1;web-2@10.0.0.2;"},
		{"service status list", `{{ range service "web" "warning" }}{{ .ID }} {{ .Tags }};{{ end }}`, "web-2 [v2];"},
		{"service tag and datacenter", `{{ range service "v1.web@dc2" "any" }}{{ .Name }};{{ end }}`, "web;web;"},
		{"services: by name, tags sorted and unique", `{{ range services }}{{ .Name }}{{ .Tags }};{{ end }}`, "consul[];db[primary];web[v1 v2];"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderOnce(t, c, tc.text, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rendered %q, want %q", got, tc.want)
			}
		})
	}
	joined := strings.Join(queries(), " ")
	for _, want := range []string{"passing=1", "dc=dc2", "tag=v1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no query had %s: %v", want, queries())
		}
	}
	for _, bad := range []string{`{{ service "" }}`, `{{ service "web" "bogus" }}`, `{{ service ".web" }}`, `{{ service "web@" }}`} {
		if _, err := renderOnce(t, c, bad, nil); err == nil {
			t.Errorf("%s: rendered without an error", bad)
		}
	}
}

func TestTemplateServiceFunctionsAgainstTheAgent(t *testing.T) {
	c := startAgent(t)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Tags: []string{"v1"}, Port: 8080, Address: "10.1.0.1",
		Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthPassing},
	}); err != nil {
		t.Fatal(err)
	}
	// The agent syncs its services into the catalog asynchronously (anti-entropy).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if e, _, err := c.Health().Service("web", "", true, nil); err == nil && len(e) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("web-1 never reached the catalog")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := renderOnce(t, c, `{{ range service "web" }}{{ .ID }} {{ .Address }}:{{ .Port }}{{ end }}|{{ range services }}{{ .Name }};{{ end }}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "web-1 10.1.0.1:8080|") || !strings.Contains(got, "web;") {
		t.Errorf("rendered %q", got)
	}
}

func TestKeyHoldsTheTemplateUntilTheKeyExists(t *testing.T) {
	c := startAgent(t)
	tc := newTemplate(t, t.TempDir(), `v={{ key "late" }}`, "")
	var logs syncBuffer
	r, err := New(Config{Client: c, Templates: []TemplateConfig{tc},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Once(context.Background()) }()
	// The first render registers the dependency; the second, after the agent answered
	// that the key does not exist, must still hold the template back.
	waitFor(t, 5*time.Second, "two incomplete renders", func() bool {
		return strings.Count(logs.String(), "template waiting for data") >= 2
	})
	if _, err := os.Stat(tc.Destination); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination written before the key exists: %v", err)
	}
	put(t, c, "late", "now")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Once did not return within 5s of the key appearing")
	}
	if got := readFile(t, tc.Destination); got != "v=now" {
		t.Fatalf("rendered %q", got)
	}
}

func TestOnceLogsAFailingCommandButSucceeds(t *testing.T) {
	c := startAgent(t)
	dir := t.TempDir()
	tc := newTemplate(t, dir, `static`, "echo ran >> "+filepath.Join(dir, "ran")+"; exit 3")
	var logs syncBuffer
	r, err := New(Config{Client: c, Templates: []TemplateConfig{tc}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "ran")); got != "ran\n" {
		t.Errorf("command ran %q times", got)
	}
	if !strings.Contains(logs.String(), "exit_code=3") {
		t.Errorf("the failure is not logged: %s", logs.String())
	}
	// The output is unchanged now: a second run writes nothing and runs nothing.
	if err := r.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "ran")); got != "ran\n" {
		t.Errorf("command ran again for an unchanged file: %q", got)
	}
}

func TestOnceReturnsAnExecutionError(t *testing.T) {
	c := startAgent(t)
	put(t, c, "k", "v")
	_, err := renderOnce(t, c, `{{ key "k" }}{{ index .Nothing 3 }}`, nil)
	if err == nil || !strings.Contains(err.Error(), "in.tmpl") {
		t.Fatalf("error %v, want an execution error naming the template", err)
	}
}

func TestWaitBoundsABurstByMax(t *testing.T) {
	c := startAgent(t)
	put(t, c, "k", "0")
	tc := newTemplate(t, t.TempDir(), `{{ key "k" }}`, "")
	r, err := New(Config{Client: c, Templates: []TemplateConfig{tc}, Wait: Wait{Min: 400 * time.Millisecond, Max: 600 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "the first render", func() bool {
		b, _ := os.ReadFile(tc.Destination)
		return string(b) == "0"
	})
	// Changes every 50 ms never leave 400 ms of calm; Max forces a render anyway.
	start := time.Now()
	for i := 1; ; i++ {
		put(t, c, "k", fmt.Sprint(i))
		if b, _ := os.ReadFile(tc.Destination); string(b) != "0" {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("no render during 10s of changes: -wait max did not bound the burst")
		}
		time.Sleep(50 * time.Millisecond) // the pace of the writes, not a wait for a result
	}
}

func TestParseErrorNamesFileAndLine(t *testing.T) {
	tc := newTemplate(t, t.TempDir(), "line one\n{{ key \"a\" }\n", "")
	_, err := New(Config{Client: &api.Client{}, Templates: []TemplateConfig{tc}})
	if !errors.Is(err, ErrParse) {
		t.Fatalf("error %v, want ErrParse", err)
	}
	if want := tc.Source + ":2:"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
	_, err = New(Config{Client: &api.Client{}, Templates: []TemplateConfig{
		{Source: tc.Source, Destination: "x"}, {Source: tc.Source, Destination: "x"}}})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("two templates writing one file: error %v, want ErrConfig", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data    string
		changed bool
	}{{"new", true}, {"new", false}, {"newer", true}} {
		changed, err := writeFileAtomic(p, []byte(tc.data))
		if err != nil || changed != tc.changed {
			t.Fatalf("write %q: changed %v, err %v; want changed %v", tc.data, changed, err, tc.changed)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600 kept", fi.Mode().Perm())
		}
	}
	fresh := filepath.Join(dir, "sub", "g")
	if _, err := writeFileAtomic(fresh, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v, %v; want mode 0644", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want f and sub (no temporary files left)", len(entries))
	}
}

func TestParseWaitAndTemplateSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Wait
		ok   bool
	}{
		{"2s", Wait{2 * time.Second, 8 * time.Second}, true},
		{"500ms:3s", Wait{500 * time.Millisecond, 3 * time.Second}, true},
		{"0s:0s", Wait{}, true},
		{"3s:1s", Wait{}, false},
		{"-1s", Wait{}, false},
		{"x", Wait{}, false},
		{"1s:y", Wait{}, false},
	} {
		got, err := ParseWait(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseWait(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want TemplateConfig
		ok   bool
	}{
		{"a.tmpl:/etc/a.conf", TemplateConfig{Source: "a.tmpl", Destination: "/etc/a.conf"}, true},
		{"a:b:systemctl reload x", TemplateConfig{Source: "a", Destination: "b", Command: "systemctl reload x"}, true},
		{"a:b:echo a:b", TemplateConfig{Source: "a", Destination: "b", Command: "echo a:b"}, true},
		{"a", TemplateConfig{}, false},
		{":b", TemplateConfig{}, false},
		{"a:", TemplateConfig{}, false},
	} {
		got, err := ParseTemplateSpec(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTemplateSpec(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

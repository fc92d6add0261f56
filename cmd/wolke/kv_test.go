package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

// startKVAgent starts an in-process dev agent and returns its HTTP address.
func startKVAgent(t testing.TB) string {
	t.Helper()
	return agenttest.StartDev(t).HTTPAddr()
}

// kvTestClient is a consul/api client for checking what the CLI did, independent of it.
func kvTestClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cliResult is what one wolke command line produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs a wolke command line in process the way main's run does (same argument
// normalisation, same "error: ..." line and exit codes), with stdin, stdout and stderr
// captured; run itself writes to os.Stderr.
func runCLI(t testing.TB, stdin string, args ...string) cliResult {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(normalizeArgs(root, args))
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := 0
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(&errOut, "error:", err)
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// mustCLI runs a command line that must succeed.
func mustCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("wolke %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// kvClearEnv unsets the variables the kv commands read for the rest of the test, so a
// developer's environment cannot change the outcome.
func kvClearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"WOLKE_HTTP_ADDR", "CONSUL_HTTP_ADDR", "WOLKE_TOKEN", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE"} {
		t.Setenv(k, "") // restores the old value after the test
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
}

func writeTempFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// binaryValue holds every byte value, NUL and invalid UTF-8 included, and no trailing
// newline, so any re-encoding or added newline shows.
var binaryValue = func() []byte {
	b := make([]byte, 0, 512)
	for i := range 256 {
		b = append(b, byte(i), byte(255-i))
	}
	return b
}()

func TestKVPutGetRoundTrip(t *testing.T) {
	t.Parallel()
	addr := "-http-addr=" + startKVAgent(t)
	file := writeTempFile(t, binaryValue)
	tests := []struct {
		name  string
		stdin string
		args  []string // after "kv put ADDR"
		key   string   // as stored
		want  []byte
		flags uint64
	}{
		{name: "literal", args: []string{"rt/literal", "hello world"}, key: "rt/literal", want: []byte("hello world")},
		{name: "no data is an empty value", args: []string{"rt/empty"}, key: "rt/empty", want: []byte{}},
		{name: "empty argument", args: []string{"rt/empty2", ""}, key: "rt/empty2", want: []byte{}},
		{name: "binary from file", args: []string{"rt/file", "@" + file}, key: "rt/file", want: binaryValue},
		{name: "binary from stdin", stdin: string(binaryValue), args: []string{"rt/stdin", "-"}, key: "rt/stdin", want: binaryValue},
		{name: "base64 argument", args: []string{"-base64", "rt/b64", base64.StdEncoding.EncodeToString(binaryValue)}, key: "rt/b64", want: binaryValue},
		{name: "base64 from stdin", stdin: base64.StdEncoding.EncodeToString([]byte("decoded")) + "\n", args: []string{"--base64", "rt/b64stdin", "-"}, key: "rt/b64stdin", want: []byte("decoded")},
		{name: "flags", args: []string{"-flags=42", "rt/flags", "v"}, key: "rt/flags", want: []byte("v"), flags: 42},
		{name: "leading slash dropped", args: []string{"/rt/slash", "s"}, key: "rt/slash", want: []byte("s")},
		{name: "value with a dash after --", args: []string{"rt/dash", "--", "-5"}, key: "rt/dash", want: []byte("-5")},
		{name: "newline kept", args: []string{"rt/nl", "line\n"}, key: "rt/nl", want: []byte("line\n")},
		{name: "unicode key", args: []string{"rt/ключ ?#%", "v"}, key: "rt/ключ ?#%", want: []byte("v")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustCLI(t, tt.stdin, append([]string{"kv", "put", addr}, tt.args...)...)
			if want := "Success! Data written to: " + tt.key + "\n"; out != want {
				t.Errorf("put printed %q, want %q", out, want)
			}
			if got := mustCLI(t, "", "kv", "get", addr, tt.key); got != string(tt.want) {
				t.Errorf("get printed %q, want %q", got, tt.want)
			}
			got := mustCLI(t, "", "kv", "get", addr, "-base64", tt.key)
			if want := base64.StdEncoding.EncodeToString(tt.want) + "\n"; got != want {
				t.Errorf("get -base64 printed %q, want %q", got, want)
			}
			if got := mustCLI(t, "", "kv", "get", addr, "-detailed", tt.key); !strings.Contains(got, fmt.Sprintf("\nFlags            %d\n", tt.flags)) {
				t.Errorf("get -detailed printed %q, want flags %d", got, tt.flags)
			}
		})
	}
}

func TestKVGetOutput(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	addr := "-http-addr=" + httpAddr
	for _, kv := range [][]string{{"app/a", "1"}, {"app/b/c", "2"}, {"app/b/d", "x:y"}, {"apple", "3"}, {"other", "4"}} {
		mustCLI(t, "", "kv", "put", addr, kv[0], kv[1])
	}
	mustCLI(t, "", "kv", "put", addr, "-flags=7", "meta", "m")
	pair, _, err := kvTestClient(t, httpAddr).KV().Get("meta", nil)
	if err != nil || pair == nil {
		t.Fatalf("get meta: %v, %v", pair, err)
	}
	detailed := func(value string) string {
		return fmt.Sprintf("CreateIndex      %d\nFlags            7\nKey              meta\nLockIndex        0\nModifyIndex      %d\nSession          -\nValue            %s\n",
			pair.CreateIndex, pair.ModifyIndex, value)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-recurse", "app/"}, "app/a:1\napp/b/c:2\napp/b/d:x:y\n"},
		{[]string{"-recurse", "app"}, "app/a:1\napp/b/c:2\napp/b/d:x:y\napple:3\n"},
		{[]string{"-recurse", "-base64", "app/b/"}, "app/b/c:Mg==\napp/b/d:eDp5\n"},
		{[]string{"-recurse", "nothing/"}, ""},
		{[]string{"-keys", "app/"}, "app/a\napp/b/\n"},
		{[]string{"-keys"}, "app/\napple\nmeta\nother\n"},
		{[]string{"-keys", "-separator=", "app/"}, "app/a\napp/b/c\napp/b/d\n"},
		{[]string{"-detailed", "meta"}, detailed("m")},
		{[]string{"-detailed", "-base64", "meta"}, detailed("bQ==")},
		{[]string{"-recurse", "-detailed", "meta"}, detailed("m")},
		{[]string{"-recurse", "-detailed", "app/b/"}, "" +
			"CreateIndex      \\d+\nFlags            0\nKey              app/b/c\nLockIndex        0\nModifyIndex      \\d+\nSession          -\nValue            2\n\n" +
			"CreateIndex      \\d+\nFlags            0\nKey              app/b/d\nLockIndex        0\nModifyIndex      \\d+\nSession          -\nValue            x:y\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got := mustCLI(t, "", append([]string{"kv", "get", addr}, tt.args...)...)
			if strings.Contains(tt.want, `\d`) {
				if !regexp.MustCompile("^" + tt.want + "$").MatchString(got) {
					t.Errorf("printed %q, want to match %q", got, tt.want)
				}
			} else if got != tt.want {
				t.Errorf("printed %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("list", func(t *testing.T) {
		if got, want := mustCLI(t, "", "kv", "list", addr, "app"), "app/a\napp/b/c\napp/b/d\napple\n"; got != want {
			t.Errorf("list app printed %q, want %q", got, want)
		}
		if got := mustCLI(t, "", "kv", "list", addr, "none/"); got != "" {
			t.Errorf("list of an empty prefix printed %q", got)
		}
	})
}

// modifyIndex reads a key's ModifyIndex through the CLI's -detailed output.
func modifyIndex(t *testing.T, addr, key string) string {
	t.Helper()
	out := mustCLI(t, "", "kv", "get", addr, "-detailed", key)
	m := regexp.MustCompile(`(?m)^ModifyIndex +(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ModifyIndex in %q", out)
	}
	return m[1]
}

func TestKVCheckAndSet(t *testing.T) {
	t.Parallel()
	addr := "-http-addr=" + startKVAgent(t)
	mustCLI(t, "", "kv", "put", addr, "cas/k", "v1")
	idx := modifyIndex(t, addr, "cas/k")

	steps := []struct {
		name      string
		args      []string
		wantCode  int
		wantOut   string // stdout, or a substring of stderr when wantCode != 0
		wantValue string // value of cas/k afterwards ("" = deleted)
	}{
		{"put with a stale index fails", []string{"put", "-cas", "-modify-index=1", "cas/k", "v2"}, 1, "error: did not write to cas/k: CAS failed", "v1"},
		{"put -modify-index=0 on an existing key fails", []string{"put", "-cas", "-modify-index=0", "cas/k", "v2"}, 1, "CAS failed", "v1"},
		{"put with the current index writes", []string{"put", "-cas", "-modify-index=" + idx, "cas/k", "v2"}, 0, "Success! Data written to: cas/k\n", "v2"},
		{"the same index again fails", []string{"put", "-cas", "-modify-index=" + idx, "cas/k", "v3"}, 1, "CAS failed", "v2"},
		{"delete with a stale index fails", []string{"delete", "-cas", "-modify-index=" + idx, "cas/k"}, 1, "error: did not delete key cas/k: CAS failed", "v2"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"kv", addr}, s.args...)...)
			checkResult(t, r, s.wantCode, s.wantOut)
			if got := mustCLI(t, "", "kv", "get", addr, "cas/k"); got != s.wantValue {
				t.Errorf("cas/k = %q, want %q", got, s.wantValue)
			}
		})
	}
	t.Run("delete with the current index deletes", func(t *testing.T) {
		r := runCLI(t, "", "kv", "delete", addr, "-cas", "-modify-index="+modifyIndex(t, addr, "cas/k"), "cas/k")
		checkResult(t, r, 0, "Success! Deleted key: cas/k\n")
		if r := runCLI(t, "", "kv", "get", addr, "cas/k"); r.code != 1 {
			t.Errorf("cas/k still there: %+v", r)
		}
	})
	t.Run("put -modify-index=0 creates a missing key", func(t *testing.T) {
		checkResult(t, runCLI(t, "", "kv", "put", addr, "-cas", "-modify-index=0", "cas/new", "n"), 0, "Success! Data written to: cas/new\n")
		if got := mustCLI(t, "", "kv", "get", addr, "cas/new"); got != "n" {
			t.Errorf("cas/new = %q", got)
		}
	})
}

// checkResult compares exit code and output: stdout when the command should succeed, a
// one-line stderr containing want when it should fail.
func checkResult(t *testing.T, r cliResult, wantCode int, want string) {
	t.Helper()
	if r.code != wantCode {
		t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", r.code, wantCode, r.stdout, r.stderr)
	}
	if wantCode == 0 {
		if r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
		return
	}
	if !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line containing %q", r.stderr, want)
	}
}

func TestKVDelete(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	addr := "-http-addr=" + httpAddr
	tests := []struct {
		name    string
		args    []string
		wantOut string
		remain  []string
	}{
		{"one key", []string{"a/1"}, "Success! Deleted key: a/1\n", []string{"a/2", "a/3/x", "ab", "b"}},
		{"a missing key succeeds", []string{"nothing"}, "Success! Deleted key: nothing\n", []string{"a/1", "a/2", "a/3/x", "ab", "b"}},
		{"recurse", []string{"-recurse", "a/"}, "Success! Deleted keys with prefix: a/\n", []string{"ab", "b"}},
		{"recurse is a plain prefix", []string{"-recurse", "a"}, "Success! Deleted keys with prefix: a\n", []string{"b"}},
		{"recurse without a prefix deletes all", []string{"-recurse"}, "Success! Deleted keys with prefix: \n", nil},
	}
	kv := kvTestClient(t, httpAddr).KV()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"a/1", "a/2", "a/3/x", "ab", "b"} {
				if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte("v")}, nil); err != nil {
					t.Fatal(err)
				}
			}
			checkResult(t, runCLI(t, "", append([]string{"kv", "delete", addr}, tt.args...)...), 0, tt.wantOut)
			keys, _, err := kv.Keys("", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.remain) && !(len(keys) == 0 && len(tt.remain) == 0) {
				t.Errorf("keys left %q, want %q", keys, tt.remain)
			}
		})
	}
}

func TestKVExportImport(t *testing.T) {
	t.Parallel()
	src, dst := startKVAgent(t), startKVAgent(t)
	fromSrc, toDst := "-http-addr="+src, "-http-addr="+dst
	kv := kvTestClient(t, src).KV()
	for _, p := range []*api.KVPair{
		{Key: "cfg/bin", Value: binaryValue},
		{Key: "cfg/dir/"},
		{Key: "cfg/empty", Flags: 3},
		{Key: "cfg/html", Value: []byte(`<a href="x">&</a>`)},
		{Key: "cfg/ünïcode", Value: []byte("ü"), Flags: 1<<64 - 1},
		{Key: "other", Value: []byte("not exported")},
	} {
		if _, err := kv.Put(p, nil); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("format", func(t *testing.T) {
		// Byte for byte what `consul kv export` prints for the same key.
		want := "[\n\t{\n\t\t\"key\": \"cfg/empty\",\n\t\t\"flags\": 3,\n\t\t\"value\": \"\"\n\t}\n]\n"
		if got := mustCLI(t, "", "kv", "export", fromSrc, "cfg/empty"); got != want {
			t.Errorf("export printed %q, want %q", got, want)
		}
		if got := mustCLI(t, "", "kv", "export", fromSrc, "none/"); got != "[]\n" {
			t.Errorf("empty export printed %q, want %q", got, "[]\n")
		}
		var entries []map[string]any
		if err := json.Unmarshal([]byte(mustCLI(t, "", "kv", "export", fromSrc, "cfg/")), &entries); err != nil {
			t.Fatal(err)
		}
		if len(entries) != 5 {
			t.Fatalf("exported %d entries, want 5", len(entries))
		}
		for _, e := range entries {
			if len(e) != 3 || e["key"] == nil || e["flags"] == nil || e["value"] == nil {
				t.Errorf("entry %v: want exactly the fields key, flags, value", e)
			}
		}
	})

	dump := mustCLI(t, "", "kv", "export", fromSrc, "cfg/")
	dumpFile := writeTempFile(t, []byte(dump))
	tests := []struct {
		name   string
		stdin  string
		args   []string
		prefix string // the keys land under this prefix of dst
	}{
		{name: "stdin", stdin: dump, args: []string{"-"}, prefix: "cfg/"},
		{name: "file", args: []string{"@" + dumpFile}, prefix: "cfg/"},
		{name: "argument", args: []string{dump}, prefix: "cfg/"},
		{name: "prefix", args: []string{"-prefix=staging/", "@" + dumpFile}, prefix: "staging/cfg/"},
		{name: "prefix without slash", args: []string{"-prefix", "qa", "@" + dumpFile}, prefix: "qa/cfg/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCLI(t, "", "kv", "delete", toDst, "-recurse")
			out := mustCLI(t, tt.stdin, append([]string{"kv", "import", toDst}, tt.args...)...)
			wantOut := ""
			for _, k := range []string{"bin", "dir/", "empty", "html", "ünïcode"} {
				wantOut += "Imported: " + tt.prefix + k + "\n"
			}
			if out != wantOut {
				t.Errorf("import printed %q, want %q", out, wantOut)
			}
			got := mustCLI(t, "", "kv", "export", toDst)
			if want := strings.ReplaceAll(dump, `"key": "cfg/`, `"key": "`+tt.prefix); got != want {
				t.Errorf("export of the import differs:\n got %s\nwant %s", got, want)
			}
		})
	}

	t.Run("consul's dump", func(t *testing.T) {
		mustCLI(t, "", "kv", "delete", toDst, "-recurse")
		// As consul kv export prints it; Consul Enterprise adds the default namespace.
		consulDump := `[{"key":"redis/config/connections","flags":0,"value":"NQ==","namespace":"default"},
			{"key":"redis/config/user","flags":42,"value":"YWRtaW4="}]`
		mustCLI(t, "", "kv", "import", toDst, consulDump)
		if got, want := mustCLI(t, "", "kv", "get", toDst, "-recurse"), "redis/config/connections:5\nredis/config/user:admin\n"; got != want {
			t.Errorf("imported %q, want %q", got, want)
		}
	})
}

func TestKVErrors(t *testing.T) {
	t.Parallel()
	addr := "-http-addr=" + startKVAgent(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "-http-addr=" + l.Addr().String()
	l.Close() // nothing listens there now
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		// Failures at run time: exit 1.
		{name: "missing key", args: []string{"get", addr, "no/such/key"}, code: 1, want: "error: no key exists at: no/such/key"},
		{name: "agent down get", args: []string{"get", down, "k"}, code: 1, want: "connection refused"},
		{name: "agent down put", args: []string{"put", down, "k", "v"}, code: 1, want: "did not write to k"},
		{name: "agent down delete", args: []string{"delete", down, "k"}, code: 1, want: "did not delete key k"},
		{name: "agent down list", args: []string{"list", down}, code: 1, want: "querying the agent"},
		{name: "agent down export", args: []string{"export", down}, code: 1, want: "connection refused"},
		{name: "agent down import", args: []string{"import", down, `[{"key":"k","value":""}]`}, code: 1, want: "failed writing data for key k (0 of 1 keys imported)"},
		{name: "missing data file", args: []string{"put", addr, "k", "@/no/such/file"}, code: 1, want: "reading the data file"},
		{name: "bad base64", args: []string{"put", addr, "-base64", "k", "!!"}, code: 1, want: "cannot base64-decode"},
		{name: "import bad json", args: []string{"import", addr, "{"}, code: 1, want: "cannot parse the import data"},
		{name: "import bad base64", args: []string{"import", addr, `[{"key":"imp/a","value":"YQ=="},{"key":"imp/b","value":"%"}]`}, code: 1, want: `entry 1 (key "imp/b"): cannot base64-decode`},
		{name: "import other namespace", args: []string{"import", addr, `[{"key":"imp/a","value":"","namespace":"team"}]`}, code: 1, want: `namespace "team"`},
		{name: "invalid key", args: []string{"put", addr, "bad\x00key", "v"}, code: 1, want: "NUL"},
		// Usage errors: exit 2.
		{name: "get without key", args: []string{"get", addr}, code: 2, want: "missing KEY argument"},
		{name: "get too many", args: []string{"get", addr, "a", "b"}, code: 2, want: "too many arguments"},
		{name: "get -keys -detailed", args: []string{"get", addr, "-keys", "-detailed"}, code: 2, want: "-keys"},
		{name: "get -separator without -keys", args: []string{"get", addr, "-separator=:", "k"}, code: 2, want: "-separator"},
		{name: "put without key", args: []string{"put", addr}, code: 2, want: "missing KEY argument"},
		{name: "put only slash", args: []string{"put", addr, "/"}, code: 2, want: "missing KEY argument"},
		{name: "put too many", args: []string{"put", addr, "k", "v", "w"}, code: 2, want: "too many arguments"},
		{name: "put -cas without index", args: []string{"put", addr, "-cas", "k", "v"}, code: 2, want: "-cas needs -modify-index"},
		{name: "put index without -cas", args: []string{"put", addr, "-modify-index=3", "k", "v"}, code: 2, want: "only with -cas"},
		{name: "put bad flags value", args: []string{"put", addr, "-flags=abc", "k", "v"}, code: 2, want: "invalid argument"},
		{name: "put unknown flag", args: []string{"put", addr, "-bogus", "k", "v"}, code: 2, want: "-bogus"},
		{name: "delete without key", args: []string{"delete", addr}, code: 2, want: "missing KEY argument"},
		{name: "delete -cas -recurse", args: []string{"delete", addr, "-cas", "-modify-index=3", "-recurse", "k"}, code: 2, want: "cannot be combined"},
		{name: "delete -cas index 0", args: []string{"delete", addr, "-cas", "k"}, code: 2, want: "greater than 0"},
		{name: "import without data", args: []string{"import", addr}, code: 2, want: "missing DATA argument"},
		{name: "import empty data", args: []string{"import", addr, ""}, code: 2, want: "empty DATA argument"},
		{name: "export too many", args: []string{"export", addr, "a", "b"}, code: 2, want: "too many arguments"},
		{name: "unknown subcommand", args: []string{"fetch", "k"}, code: 2, want: `unknown kv subcommand "fetch"`},
		{name: "address without port", args: []string{"get", "-http-addr=localhost", "k"}, code: 2, want: `invalid -http-addr "localhost"`},
		{name: "address bad scheme", args: []string{"get", "-http-addr=unix:///tmp/sock", "k"}, code: 2, want: `scheme "unix"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.stdin, append([]string{"kv"}, tt.args...)...)
			checkResult(t, r, tt.code, tt.want)
			if r.stdout != "" {
				t.Errorf("a failed command printed %q to stdout", r.stdout)
			}
		})
	}
	t.Run("import checks everything before writing", func(t *testing.T) {
		if out := mustCLI(t, "", "kv", "list", addr, "imp/"); out != "" {
			t.Errorf("a failed import wrote %q", out)
		}
	})
}

func TestKVAddressFromEnv(t *testing.T) {
	httpAddr := startKVAgent(t)
	mustCLI(t, "", "kv", "put", "-http-addr="+httpAddr, "env/k", "found")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     string
	}{
		{name: "CONSUL_HTTP_ADDR", env: map[string]string{"CONSUL_HTTP_ADDR": httpAddr}, want: "found"},
		{name: "CONSUL_HTTP_ADDR with scheme", env: map[string]string{"CONSUL_HTTP_ADDR": "http://" + httpAddr}, want: "found"},
		{name: "WOLKE_HTTP_ADDR", env: map[string]string{"WOLKE_HTTP_ADDR": httpAddr}, want: "found"},
		{name: "WOLKE_HTTP_ADDR before CONSUL_HTTP_ADDR", env: map[string]string{"WOLKE_HTTP_ADDR": httpAddr, "CONSUL_HTTP_ADDR": down}, want: "found"},
		{name: "flag before both", env: map[string]string{"WOLKE_HTTP_ADDR": down, "CONSUL_HTTP_ADDR": down}, args: []string{"-http-addr", httpAddr}, want: "found"},
		{name: "flag with scheme", env: map[string]string{"CONSUL_HTTP_ADDR": down}, args: []string{"--http-addr=http://" + httpAddr + "/"}, want: "found"},
		{name: "unreachable CONSUL_HTTP_ADDR is used", env: map[string]string{"CONSUL_HTTP_ADDR": down}, wantCode: 1, want: down},
		{name: "bad CONSUL_HTTP_ADDR", env: map[string]string{"CONSUL_HTTP_ADDR": "nohost"}, wantCode: 2, want: `invalid CONSUL_HTTP_ADDR "nohost"`},
		{name: "bad WOLKE_HTTP_ADDR", env: map[string]string{"WOLKE_HTTP_ADDR": "ftp://" + httpAddr}, wantCode: 2, want: `invalid -http-addr`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvClearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := runCLI(t, "", append(append([]string{"kv", "get"}, tt.args...), "env/k")...)
			checkResult(t, r, tt.wantCode, tt.want)
		})
	}
}

func TestKVTokenAndPathPrefix(t *testing.T) {
	var mu sync.Mutex
	var gotToken, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotToken, gotPath = r.Header.Get("X-Consul-Token"), r.URL.Path
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`["k"]`))
	}))
	t.Cleanup(srv.Close)
	tokenFile := writeTempFile(t, []byte(" from-file\n"))
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantToken string
		wantPath  string
	}{
		{name: "no token", wantToken: ""},
		{name: "flag", args: []string{"-token=from-flag"}, env: map[string]string{"CONSUL_HTTP_TOKEN": "from-consul", "WOLKE_TOKEN": "from-wolke"}, wantToken: "from-flag"},
		{name: "WOLKE_TOKEN", env: map[string]string{"CONSUL_HTTP_TOKEN": "from-consul", "WOLKE_TOKEN": "from-wolke"}, wantToken: "from-wolke"},
		{name: "CONSUL_HTTP_TOKEN", env: map[string]string{"CONSUL_HTTP_TOKEN": "from-consul"}, wantToken: "from-consul"},
		{name: "CONSUL_HTTP_TOKEN_FILE", env: map[string]string{"CONSUL_HTTP_TOKEN": "from-consul", "CONSUL_HTTP_TOKEN_FILE": tokenFile}, wantToken: "from-file"},
		{name: "path prefix", args: []string{"-http-addr=" + srv.URL + "/consul"}, wantPath: "/consul/v1/kv/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvClearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"kv", "list", "-http-addr=" + srv.URL}, tt.args...)
			if got := mustCLI(t, "", append(args, "p")...); got != "k\n" {
				t.Errorf("list printed %q", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if gotToken != tt.wantToken {
				t.Errorf("agent saw token %q, want %q", gotToken, tt.wantToken)
			}
			if tt.wantPath != "" && gotPath != tt.wantPath {
				t.Errorf("agent saw path %q, want %q", gotPath, tt.wantPath)
			}
		})
	}
	t.Run("unreadable CONSUL_HTTP_TOKEN_FILE", func(t *testing.T) {
		kvClearEnv(t)
		t.Setenv("CONSUL_HTTP_TOKEN_FILE", filepath.Join(t.TempDir(), "missing"))
		checkResult(t, runCLI(t, "", "kv", "list", "-http-addr="+srv.URL), 1, "reading CONSUL_HTTP_TOKEN_FILE")
	})
}

func TestParseAgentAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    agentEndpoint
		wantErr string
	}{
		{in: "127.0.0.1:8500", want: agentEndpoint{Scheme: "http", Host: "127.0.0.1:8500"}},
		{in: "localhost:1", want: agentEndpoint{Scheme: "http", Host: "localhost:1"}},
		{in: "[::1]:8500", want: agentEndpoint{Scheme: "http", Host: "[::1]:8500"}},
		{in: "http://10.0.0.1:8500", want: agentEndpoint{Scheme: "http", Host: "10.0.0.1:8500"}},
		{in: "https://consul.example:8501/", want: agentEndpoint{Scheme: "https", Host: "consul.example:8501"}},
		{in: "http://proxy:80/consul/", want: agentEndpoint{Scheme: "http", Host: "proxy:80", PathPrefix: "/consul"}},
		{in: "localhost", wantErr: "want HOST:PORT"},
		{in: ":8500", wantErr: "want HOST:PORT"},
		{in: "host:0", wantErr: `port "0"`},
		{in: "host:99999", wantErr: `port "99999"`},
		{in: "host:http", wantErr: "want HOST:PORT"},
		{in: "unix:///var/run/consul.sock", wantErr: `scheme "unix"`},
		{in: "http://user:pw@host:1", wantErr: "without user"},
		{in: "http://host:1/?x=1", wantErr: "without user, query"},
		{in: "host:1/consul", wantErr: "a path needs the scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseAgentAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseAgentAddr(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseAgentAddr(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestKVPutAcquireRelease(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	out := mustCLI(t, "", "kv", "put", "-http-addr", addr, "-acquire", "leader", "me")
	if !strings.Contains(out, "Session: ") || !strings.Contains(out, "Success! Lock acquired on: leader") {
		t.Fatalf("acquire with a new session: %q", out)
	}
	session := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "Session: "))
	p, _, err := kvTestClient(t, addr).KV().Get("leader", nil)
	if err != nil || p == nil || p.Session != session || string(p.Value) != "me" {
		t.Fatalf("locked key %+v %v (session %q)", p, err, session)
	}
	other, _, err := kvTestClient(t, addr).Session().Create(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", "kv", "put", "-http-addr", addr, "-acquire", "-session", other, "leader", "you"); r.code != 1 || !strings.Contains(r.stderr, "held by another session") {
		t.Fatalf("acquire of a held lock: exit %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, "", "kv", "put", "-http-addr", addr, "-release", "-session", other, "leader"); r.code != 1 {
		t.Fatalf("release by another session: exit %d", r.code)
	}
	mustCLI(t, "", "kv", "put", "-http-addr", addr, "-release", "-session", session, "leader", "bye")
	if p, _, _ := kvTestClient(t, addr).KV().Get("leader", nil); p == nil || p.Session != "" || string(p.Value) != "bye" {
		t.Fatalf("after release: %+v", p)
	}
	for _, args := range [][]string{{"-acquire", "-release", "k"}, {"-release", "k"}, {"-session", "x", "k"}, {"-acquire", "-cas", "-modify-index", "1", "k"}} {
		if r := runCLI(t, "", append([]string{"kv", "put", "-http-addr", addr}, args...)...); r.code != 2 {
			t.Errorf("kv put %v: exit %d, want 2", args, r.code)
		}
	}
}

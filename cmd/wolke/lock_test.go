package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// lockWaitFor polls cond every 10ms until it holds, failing the test after d.
func lockWaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// holdScript is a child that writes its fencing token to $DIR/<name>.idx, then waits
// (at most 9s) until $DIR/go exists.
func holdScript(dir, name string) string {
	return `echo "$WOLKE_LOCK_INDEX" > ` + filepath.Join(dir, name+".tmp") + ` && mv ` + filepath.Join(dir, name+".tmp") + ` ` + filepath.Join(dir, name+".idx") + `
i=0; while [ ! -e ` + filepath.Join(dir, "go") + ` ] && [ $i -lt 900 ]; do sleep 0.01; i=$((i+1)); done`
}

func TestLockExitCodeIsTheChilds(t *testing.T) {
	t.Parallel()
	addr := "-http-addr=" + startKVAgent(t)
	for _, tc := range []struct {
		argv []string
		code int
	}{
		{[]string{"sh", "-c", "exit 0"}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"exit 3"}, 3},                      // one argument: a shell command line
		{[]string{"sh", "-c", "kill -TERM $$"}, 143}, // killed by SIGTERM: 128+15
	} {
		args := append([]string{"lock", addr, "locks/exit", "--"}, tc.argv...)
		if r := runCLI(t, "", args...); r.code != tc.code {
			t.Errorf("wolke %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, tc.code, r.stderr)
		}
	}
	// The lock was released and its key cleaned up, as consul lock does.
	if p, _, err := kvTestClient(t, strings.TrimPrefix(addr, "-http-addr=")).KV().Get("locks/exit/.lock", nil); err != nil || p != nil {
		t.Errorf("lock key after the runs: %+v, %v; want it deleted", p, err)
	}
}

func TestLockPassesOutputAndStdin(t *testing.T) {
	t.Parallel()
	addr := "-http-addr=" + startKVAgent(t)
	r := runCLI(t, "hello", "lock", addr, "-pass-stdin", "locks/io", "--", "sh", "-c", `cat; echo " $CONSUL_LOCK_HELD"`)
	if r.code != 0 || r.stdout != "hello true\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "hello", "lock", addr, "locks/io", "--", "cat")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("without -pass-stdin: exit %d, stdout %q (want no input)", r.code, r.stdout)
	}
}

func TestLockIndexIsTheKeysModifyIndex(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	kv := kvTestClient(t, httpAddr).KV()
	dir := t.TempDir()
	var wg sync.WaitGroup
	var res cliResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		res = runCLI(t, "", "lock", "-http-addr="+httpAddr, "jobs/x", "--", "sh", "-c", holdScript(dir, "a"))
	}()
	lockWaitFor(t, 5*time.Second, "the child", func() bool { return fileExists(filepath.Join(dir, "a.idx")) })
	b, _ := os.ReadFile(filepath.Join(dir, "a.idx"))
	token, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	pair, _, gerr := kv.Get("jobs/x/.lock", &api.QueryOptions{RequireConsistent: true})
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	wg.Wait()
	if err != nil || gerr != nil || pair == nil {
		t.Fatalf("token %q (%v), key %+v (%v)", b, err, pair, gerr)
	}
	if pair.Session == "" || pair.LockIndex != 1 || pair.Flags != api.LockFlagValue {
		t.Errorf("lock key while held: %+v", pair)
	}
	if token != pair.ModifyIndex || token == 0 {
		t.Errorf("WOLKE_LOCK_INDEX=%d, key's ModifyIndex %d", token, pair.ModifyIndex)
	}
	if res.code != 0 {
		t.Errorf("exit %d: %s", res.code, res.stderr)
	}
	// A second holder gets a higher token.
	r := runCLI(t, "", "lock", "-http-addr="+httpAddr, "jobs/x", "--", "sh", "-c", `echo $WOLKE_LOCK_INDEX`)
	if next, _ := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64); next <= token {
		t.Errorf("second token %q not above %d", r.stdout, token)
	}
}

func TestLockTimeoutWhileHeld(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runCLI(t, "", "lock", "-http-addr="+httpAddr, "jobs/t", "--", "sh", "-c", holdScript(dir, "a"))
	}()
	defer wg.Wait()
	defer os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	lockWaitFor(t, 5*time.Second, "the holder", func() bool { return fileExists(filepath.Join(dir, "a.idx")) })
	start := time.Now()
	r := runCLI(t, "", "lock", "-http-addr="+httpAddr, "-timeout", "300ms", "jobs/t", "--", "touch", filepath.Join(dir, "b"))
	if r.code != 1 || fileExists(filepath.Join(dir, "b")) || !strings.Contains(r.stderr, "not acquired") {
		t.Fatalf("second holder: exit %d, ran=%v, stderr %q; want exit 1 without running", r.code, fileExists(filepath.Join(dir, "b")), r.stderr)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Errorf("gave up after %v, want about 300ms", el)
	}
}

func TestLockSemaphoreAdmitsN(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, n := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = runCLI(t, "", "lock", "-http-addr="+httpAddr, "-n", "2", "pool", "--", "sh", "-c", holdScript(dir, n)).code
		}()
	}
	released := false
	defer func() {
		if !released {
			os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
			wg.Wait()
		}
	}()
	lockWaitFor(t, 5*time.Second, "two holders of -n 2", func() bool {
		return fileExists(filepath.Join(dir, "a.idx")) && fileExists(filepath.Join(dir, "b.idx"))
	})
	for _, n := range []string{"a", "b"} {
		b, _ := os.ReadFile(filepath.Join(dir, n+".idx"))
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil || v == 0 {
			t.Errorf("holder %s: WOLKE_LOCK_INDEX %q", n, b)
		}
	}
	r := runCLI(t, "", "lock", "-http-addr="+httpAddr, "-n", "2", "-timeout", "500ms", "pool", "--", "touch", filepath.Join(dir, "c"))
	if r.code != 1 || fileExists(filepath.Join(dir, "c")) {
		t.Fatalf("third holder of -n 2: exit %d, ran=%v, stderr %q; want exit 1 without running", r.code, fileExists(filepath.Join(dir, "c")), r.stderr)
	}
	// A lock (-n 1) at the same prefix conflicts with the semaphore, as in Consul.
	if r := runCLI(t, "", "lock", "-http-addr="+httpAddr, "-timeout", "2s", "pool", "--", "true"); r.code != 1 {
		t.Errorf("lock over a semaphore's prefix: exit %d, stderr %q", r.code, r.stderr)
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	wg.Wait()
	released = true
	if codes[0] != 0 || codes[1] != 0 {
		t.Errorf("holders exited %v", codes)
	}
	// With the slots free, a third holder gets in.
	if r := runCLI(t, "", "lock", "-http-addr="+httpAddr, "-n", "2", "-timeout", "5s", "pool", "--", "true"); r.code != 0 {
		t.Errorf("after release: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestLockLostStopsTheChild(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	c := kvTestClient(t, httpAddr)
	dir := t.TempDir()
	script := `trap 'echo term > ` + filepath.Join(dir, "term") + `; exit 0' TERM
` + holdScript(dir, "a")
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(t, "", "lock", "-verbose", "-http-addr="+httpAddr, "jobs/lost", "--", "sh", "-c", script)
	}()
	lockWaitFor(t, 5*time.Second, "the holder", func() bool { return fileExists(filepath.Join(dir, "a.idx")) })
	pair, _, err := c.KV().Get("jobs/lost/.lock", nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("lock key: %+v, %v", pair, err)
	}
	start := time.Now()
	if _, err := c.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if !fileExists(filepath.Join(dir, "term")) || !strings.Contains(r.stderr, "lock lost") {
			t.Errorf("child not stopped with SIGTERM: exit %d, stderr %q", r.code, r.stderr)
		}
		t.Logf("child stopped %v after the session was destroyed", time.Since(start))
	case <-time.After(8 * time.Second):
		os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
		t.Fatal("wolke lock did not notice the lost lock within 8s")
	}
}

func TestLockAndElectUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"lock"},
		{"lock", "prefix"},
		{"lock", "prefix", "--"},
		{"lock", "-n", "0", "prefix", "--", "true"},
		{"lock", "-timeout", "-1s", "prefix", "--", "true"},
		{"lock", "-monitor-retry", "-1", "prefix", "--", "true"},
		{"lock", "-lock-delay", "2m", "prefix", "--", "true"},
		{"lock", "-nosuchflag", "prefix", "--", "true"},
		{"lock", "/", "--", "true"},
		{"elect"},
		{"elect", "prefix"},
		{"elect", "-show"},
		{"elect", "-show", "prefix", "--", "true"},
		{"elect", "-ttl", "0s", "prefix", "--", "true"},
	} {
		full := append([]string{args[0], "-http-addr=127.0.0.1:1"}, args[1:]...)
		if r := runCLI(t, "", full...); r.code != 2 {
			t.Errorf("wolke %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

func TestElectRunsTheLeaderAndShowsIt(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	addr := "-http-addr=" + httpAddr
	if r := runCLI(t, "", "elect", addr, "-show", "svc/a"); r.code != 1 {
		t.Fatalf("-show without a leader: exit %d, stdout %q", r.code, r.stdout)
	}
	dir := t.TempDir()
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(t, "", "elect", addr, "-name", "alpha", "svc/a", "--", "sh", "-c", `[ "$WOLKE_LEADER" = true ] && `+holdScript(dir, "a"))
	}()
	lockWaitFor(t, 5*time.Second, "the leader's child", func() bool { return fileExists(filepath.Join(dir, "a.idx")) })
	r := runCLI(t, "", "elect", addr, "-show", "svc/a")
	if r.code != 0 || !strings.Contains(r.stdout, `"Name":"alpha"`) || !strings.Contains(r.stdout, `"PID":`) {
		t.Errorf("-show: exit %d, stdout %q", r.code, r.stdout)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a.idx"))
	pair, _, _ := kvTestClient(t, httpAddr).KV().Get("svc/a/leader", nil)
	if pair == nil || strings.TrimSpace(string(b)) != strconv.FormatUint(pair.ModifyIndex, 10) {
		t.Errorf("WOLKE_LOCK_INDEX %q, key %+v", b, pair)
	}
	// The child exits: wolke elect resigns, campaigns again and, alone, runs it again
	// until runCLI's 10s context ends; then it resigns for good and exits 0.
	os.Remove(filepath.Join(dir, "a.idx"))
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stdout, `leader: {"Name":"alpha"`) || !strings.Contains(r.stderr, "resigning") {
			t.Errorf("elect: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("wolke elect did not exit when its context ended")
	}
	if r := runCLI(t, "", "elect", addr, "-show", "svc/a"); r.code != 1 {
		t.Errorf("-show after resigning: exit %d, stdout %q", r.code, r.stdout)
	}
}

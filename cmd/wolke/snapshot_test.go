package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// kvContents lists every key with its value, flags and indexes.
func kvContents(t *testing.T, addr string) api.KVPairs {
	t.Helper()
	list, _, err := kvTestClient(t, addr).KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

var savedRE = regexp.MustCompile(`^Saved and verified snapshot to index (\d+)\n$`)

func TestSnapshotSaveInspectRestore(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	addr := "-http-addr=" + httpAddr
	kv := kvTestClient(t, httpAddr).KV()
	for i := range 5 {
		if _, err := kv.Put(&api.KVPair{Key: fmt.Sprintf("cfg/%d", i), Value: binaryValue, Flags: uint64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Delete("cfg/0", nil); err != nil {
		t.Fatal(err)
	}
	want := kvContents(t, httpAddr)

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	out := mustCLI(t, "", "snapshot", "save", addr, file)
	m := savedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("save printed %q", out)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// inspect works offline: no agent address is given.
	out = mustCLI(t, "", "snapshot", "inspect", file)
	for _, line := range []string{
		`(?m)^ID +\d+-` + m[1] + `-\d+$`, `(?m)^Index +` + m[1] + `$`, `(?m)^Version +1$`,
		`(?m)^Size +\d+$`, `(?m)^Term +[1-9]\d*$`, `(?m)^KV entries +4$`,
		`(?m)^Tombstones +2$`, // cfg/0 and startKVAgent's _ready
		`(?m)^File size +\d+$`, `(?m)^Build +\S+$`,
	} {
		if !regexp.MustCompile(line).MatchString(out) {
			t.Errorf("inspect output lacks %s:\n%s", line, out)
		}
	}

	// Change everything, then restore: the saved contents come back exactly.
	kv.Put(&api.KVPair{Key: "cfg/1", Value: []byte("changed")}, nil)
	kv.Delete("cfg/2", nil)
	kv.Put(&api.KVPair{Key: "new", Value: []byte("x")}, nil)
	out = mustCLI(t, "", "snapshot", "restore", addr, file)
	if !strings.HasPrefix(out, "Restored snapshot ") || !strings.Contains(out, "(index "+m[1]+")") {
		t.Errorf("restore printed %q", out)
	}
	if got := kvContents(t, httpAddr); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restore: %d keys %v, want %d keys", len(got), got, len(want))
	}
}

func TestSnapshotCorruptFileRejected(t *testing.T) {
	t.Parallel()
	httpAddr := startKVAgent(t)
	addr := "-http-addr=" + httpAddr
	kv := kvTestClient(t, httpAddr).KV()
	if _, err := kv.Put(&api.KVPair{Key: "a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	mustCLI(t, "", "snapshot", "save", addr, good)
	// A key written after the save: a restore that slipped through would remove it.
	if _, err := kv.Put(&api.KVPair{Key: "b", Value: []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	want := kvContents(t, httpAddr)

	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x08
	for name, content := range map[string][]byte{
		"truncated.snap": data[:len(data)/2],
		"flipped.snap":   flipped,
		"junk.snap":      []byte("not a snapshot at all\n"),
		"empty.snap":     nil,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"restore", addr, p}, {"inspect", p}} {
			checkResult(t, runCLI(t, "", append([]string{"snapshot"}, args...)...), 1, p+" is not a valid snapshot: snapshot: invalid archive")
		}
	}
	if got := kvContents(t, httpAddr); !reflect.DeepEqual(got, want) {
		t.Fatalf("a rejected restore changed the store: %v", got)
	}

	checkResult(t, runCLI(t, "", "snapshot", "inspect", filepath.Join(dir, "missing.snap")), 1, "no such file")
	checkResult(t, runCLI(t, "", "snapshot", "save", addr), 2, "missing FILE argument")
	checkResult(t, runCLI(t, "", "snapshot", "restore", addr, good, "extra"), 2, "too many arguments")
	checkResult(t, runCLI(t, "", "snapshot", "bogus"), 2, `unknown snapshot subcommand "bogus"`)
}

// TestSnapshotSaveKeepsNoBadFile: what the agent sends is checked before it becomes
// FILE; a bad download leaves neither FILE nor FILE.tmp.
func TestSnapshotSaveKeepsNoBadFile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "7")
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Write([]byte("\x1f\x8b truncated gzip"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	checkResult(t, runCLI(t, "", "snapshot", "save", "-http-addr="+srv.URL, file), 1, "the agent sent an invalid snapshot")

	// An agent that is not there.
	checkResult(t, runCLI(t, "", "snapshot", "save", "-http-addr=127.0.0.1:1", file), 1, "saving a snapshot")
	for _, p := range []string{file, file + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed save: %v", p, err)
		}
	}
}

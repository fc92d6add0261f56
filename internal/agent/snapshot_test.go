package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/snapshot"
)

// startThreeServers starts a fresh 3-server cluster and waits until it has a leader
// with three voters.
func followerOf(servers []*Agent) *Agent {
	for _, s := range servers {
		if !s.node.IsLeader() {
			return s
		}
	}
	return nil
}

// kvDump lists every key, the way a client sees them.
func kvDump(t testing.TB, a *Agent, q *api.QueryOptions) (api.KVPairs, uint64) {
	t.Helper()
	list, meta, err := clientFor(t, a).KV().List("", q)
	if err != nil {
		t.Fatalf("list via %s: %v", a.cfg.NodeName, err)
	}
	for _, p := range list {
		p.Namespace, p.Partition = "", ""
	}
	return list, meta.LastIndex
}

func dumpString(list api.KVPairs) string {
	var b strings.Builder
	for _, p := range list {
		fmt.Fprintf(&b, "%s=%q(flags %d, create %d, modify %d) ", p.Key, p.Value, p.Flags, p.CreateIndex, p.ModifyIndex)
	}
	return b.String()
}

// blockingQueries reads the agent's gauge of waiting blocking queries.
func blockingQueries(t testing.TB, a *Agent) float64 {
	t.Helper()
	mfs, err := a.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "wolke_http_blocking_queries" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// TestSnapshotSaveRestoreIntoFreshCluster is issue 3's acceptance test: a snapshot saved
// on one cluster and restored into a fresh one gives identical KV contents on every
// server, and blocking queries on the restored cluster wake.
func TestSnapshotSaveRestoreIntoFreshCluster(t *testing.T) {
	src := startThreeServers(t, "a")
	kv := clientFor(t, leaderOf(src)).KV()
	for i := range 30 {
		p := &api.KVPair{Key: fmt.Sprintf("app/%02d", i), Value: []byte(fmt.Sprintf("value %d\x00\xff", i)), Flags: uint64(i)}
		if _, err := kv.Put(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 { // tombstones travel too
		if _, err := kv.Delete(fmt.Sprintf("app/%02d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(&api.KVPair{Key: "empty"}, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := kvDump(t, leaderOf(src), nil)
	if len(want) != 26 {
		t.Fatalf("source has %d keys", len(want))
	}

	// Save through a follower: the request goes to the leader and the archive streams
	// back through the follower.
	body, qm, err := clientFor(t, followerOf(src)).Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		t.Fatal(err)
	}
	meta, err := snapshot.Verify(bytes.NewReader(archive), snapshot.Options{})
	if err != nil {
		t.Fatalf("saved archive does not verify: %v", err)
	}
	if qm.LastIndex != meta.Index || meta.Index < want[len(want)-1].ModifyIndex || !qm.KnownLeader {
		t.Fatalf("X-Consul-Index %d, meta %+v, KnownLeader %v", qm.LastIndex, meta, qm.KnownLeader)
	}
	// ?stale: a follower snapshots its own state, which converges to the same.
	for _, s := range src {
		waitFor(t, 5*time.Second, "a stale snapshot on "+s.cfg.NodeName, func() bool {
			body, qm, err := clientFor(t, s).Snapshot().Save(&api.QueryOptions{AllowStale: true})
			if err != nil {
				return false
			}
			defer body.Close()
			m, err := snapshot.Verify(body, snapshot.Options{})
			return err == nil && m.Index == meta.Index && qm.LastIndex == meta.Index
		})
	}

	// A fresh cluster with other contents, and more writes than the source so that its
	// index differs from the restored one.
	dst := startThreeServers(t, "b")
	dl := leaderOf(dst)
	for i := range 40 {
		if _, err := clientFor(t, dl).KV().Put(&api.KVPair{Key: fmt.Sprintf("old/%02d", i), Value: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, before := kvDump(t, dl, nil)

	// Blocking queries on the leader (default mode) and on a follower (stale: it wakes
	// when the follower installs the snapshot) wait for a change.
	type result struct {
		list api.KVPairs
		err  error
	}
	follower := followerOf(dst)
	waits := map[*Agent]chan result{dl: make(chan result, 1), follower: make(chan result, 1)}
	for a, ch := range waits {
		q := &api.QueryOptions{WaitIndex: before, WaitTime: time.Minute, AllowStale: a == follower}
		if a == follower {
			waitFor(t, 5*time.Second, "the follower to catch up", func() bool {
				_, idx := kvDump(t, follower, &api.QueryOptions{AllowStale: true})
				return idx == before
			})
		}
		go func() {
			list, _, err := clientFor(t, a).KV().List("", q)
			ch <- result{list, err}
		}()
		waitFor(t, 5*time.Second, "a blocking query on "+a.cfg.NodeName, func() bool { return blockingQueries(t, a) == 1 })
	}

	// Restore through a follower (forwarded to the leader).
	if err := clientFor(t, follower).Snapshot().Restore(nil, bytes.NewReader(archive)); err != nil {
		t.Fatalf("restore: %v", err)
	}

	for a, ch := range waits {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("blocking query on %s: %v", a.cfg.NodeName, r.err)
			}
			if a == dl && !reflect.DeepEqual(r.list, want) {
				t.Errorf("blocking query on the leader woke with %s", dumpString(r.list))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("blocking query on %s did not wake on restore", a.cfg.NodeName)
		}
	}

	for _, s := range dst {
		got, _ := kvDump(t, s, nil)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("default read via %s after restore:\n got %s\nwant %s", s.cfg.NodeName, dumpString(got), dumpString(want))
		}
		var stale api.KVPairs
		waitFor(t, 10*time.Second, "restored state on "+s.cfg.NodeName, func() bool {
			stale, _ = kvDump(t, s, &api.QueryOptions{AllowStale: true})
			return reflect.DeepEqual(stale, want)
		})
	}

	// Indexes move on: the next write is numbered past everything restored.
	wm, err := clientFor(t, dl).KV().Put(&api.KVPair{Key: "after", Value: []byte("1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := clientFor(t, dl).KV().Get("after", nil)
	if err != nil || p == nil || p.ModifyIndex <= meta.Index || p.ModifyIndex <= before {
		t.Fatalf("write after restore: %+v %v (restored index %d, old index %d, %v)", p, err, meta.Index, before, wm)
	}
}

// putSnapshot sends body to PUT /v1/snapshot and returns the status and answer.
func putSnapshot(t testing.TB, a *Agent, body []byte) (int, string) {
	t.Helper()
	return rawRequest(t, a, http.MethodPut, "/v1/snapshot", body)
}

// rawRequest sends one request to a's HTTP API and returns the status and answer.
func rawRequest(t testing.TB, a *Agent, method, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSnapshotRestoreRejectsBadArchives: a corrupt, truncated or otherwise invalid
// archive is answered 400 with a one-line reason and changes nothing.
func TestSnapshotRestoreRejectsBadArchives(t *testing.T) {
	a := startDev(t)
	kv := clientFor(t, a).KV()
	for i := range 10 {
		if _, err := kv.Put(&api.KVPair{Key: fmt.Sprintf("k/%d", i), Value: []byte("v")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := a.SaveSnapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := snap.WriteTo(&good); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	// Change the contents, so a restore that slipped through would show.
	if _, err := kv.Put(&api.KVPair{Key: "k/new", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	want, wantIndex := kvDump(t, a, nil)

	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)/2] ^= 0x10
	// An intact archive whose state is not a wolke state stream: its checksums match,
	// so only parsing the state catches it (Raft would panic the server otherwise).
	var badState bytes.Buffer
	junk := []byte("WOLKESNAP\x01 not msgpack records")
	snapshot.Write(&badState, snapshot.Meta{Index: 5, Size: int64(len(junk))}, bytes.NewReader(junk))
	// A state stream cut short, in an intact archive.
	var short bytes.Buffer
	cut, _ := io.ReadAll(mustArchiveState(t, good.Bytes()))
	cut = cut[:len(cut)-3]
	snapshot.Write(&short, snapshot.Meta{Index: 5, Size: int64(len(cut))}, bytes.NewReader(cut))

	for _, tc := range []struct {
		name, want string
		body       []byte
	}{
		{"empty body", "not a gzip stream", nil},
		{"not an archive", "not a gzip stream", []byte("hello")},
		{"truncated", "invalid archive", good.Bytes()[:good.Len()*2/3]},
		{"truncated trailer", "invalid archive", good.Bytes()[:good.Len()-4]},
		{"flipped byte", "invalid archive", flipped},
		{"junk appended", "after the end of the archive", append(bytes.Clone(good.Bytes()), '\n')},
		{"state not parseable", "state.bin: fsm: corrupt", badState.Bytes()},
		{"state truncated", "state.bin: fsm: corrupt", short.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := putSnapshot(t, a, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) || strings.Count(body, "\n") != 1 {
				t.Fatalf("answer %d %q: want 400 with one line containing %q", code, body, tc.want)
			}
			got, idx := kvDump(t, a, nil)
			if idx != wantIndex || !reflect.DeepEqual(got, want) {
				t.Fatalf("state changed by a rejected restore: index %d -> %d, %s", wantIndex, idx, dumpString(got))
			}
		})
	}
	if !a.node.ReadReady() {
		t.Fatal("the server stopped leading after rejected restores")
	}

	// The good archive still restores, and the extra key is gone.
	if code, body := putSnapshot(t, a, good.Bytes()); code != http.StatusOK {
		t.Fatalf("good archive: %d %q", code, body)
	}
	if p, _, err := kv.Get("k/new", nil); err != nil || p != nil {
		t.Fatalf("k/new after restore: %+v %v", p, err)
	}
}

// mustArchiveState returns the state stream inside an archive.
func mustArchiveState(t testing.TB, archive []byte) io.Reader {
	t.Helper()
	arc, err := snapshot.Read(bytes.NewReader(archive), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arc.Close() })
	return arc.State()
}

func TestSnapshotEndpointLimitsAndMethods(t *testing.T) {
	a := startDev(t)
	// A declared length over the limit is refused before the body is read (beyond
	// the 8 KiB the HTTP server reads with the header).
	conn, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", int64(2<<30), strings.Repeat("s", 8<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too large") {
		t.Fatalf("oversized restore: %d %q", resp.StatusCode, b)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+"/v1/snapshot", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, PUT" {
		t.Fatalf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestLargeSnapshotRestoreThroughFollower: a restore bigger than a KV body limit sent
// to a follower is streamed to the leader, not refused.
func TestLargeSnapshotRestoreThroughFollower(t *testing.T) {
	// Production's Raft timeouts, not the tests' short ones: both followers install the
	// restored 1.3 MB snapshot at once, and under -race on two shared cores that holds
	// up their heartbeat answers past a 50 ms lease, which deposes the leader mid-restore
	// (seen in CI). This test is about streaming, not about elections.
	servers := startThreeServersWith(t, "big", func(c *Config) {
		d := DefaultConfig()
		c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = d.Raft.HeartbeatTimeout, d.Raft.ElectionTimeout, d.Raft.LeaderLeaseTimeout
	})
	kv := clientFor(t, leaderOf(servers)).KV()
	src := rand.NewChaCha8([32]byte{1})
	for i := range 80 { // 80 × 16 KiB: well above the 576 KiB forwarding buffer
		val := make([]byte, 16<<10)
		src.Read(val) // incompressible, so the archive stays big
		if _, err := kv.Put(&api.KVPair{Key: fmt.Sprintf("big/%02d", i), Value: val}, nil); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := kvDump(t, leaderOf(servers), nil)
	req, _ := http.NewRequest(http.MethodGet, "http://"+leaderOf(servers).HTTPAddr()+"/v1/snapshot", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	archive, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(archive) < 700<<10 {
		t.Fatalf("save: %d, %d bytes", resp.StatusCode, len(archive))
	}
	if _, err := kv.DeleteTree("big/", nil); err != nil {
		t.Fatal(err)
	}
	if code, body := putSnapshot(t, followerOf(servers), archive); code != 200 {
		t.Fatalf("restore through a follower: %d %s", code, body)
	}
	got, _ := kvDump(t, leaderOf(servers), nil)
	if dumpString(got) != dumpString(want) {
		t.Fatalf("after restore %d keys, want %d", len(got), len(want))
	}
}

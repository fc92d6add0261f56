package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func entry(i uint64) *raft.Log {
	return &raft.Log{
		Index: i, Term: i/10 + 1, Type: raft.LogCommand,
		Data:       []byte(fmt.Sprintf("data-%d", i)),
		Extensions: []byte{byte(i)},
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func entries(lo, hi uint64) []*raft.Log {
	var out []*raft.Log
	for i := lo; i <= hi; i++ {
		out = append(out, entry(i))
	}
	return out
}

func open(t *testing.T, dir string, seg int64) *Log {
	t.Helper()
	l, err := Open(dir, Options{SegmentBytes: seg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// check asserts the log holds exactly lo..hi (0, 0: empty) with the right contents.
func check(t *testing.T, l *Log, lo, hi uint64) {
	t.Helper()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	if first != lo || last != hi {
		t.Fatalf("log holds %d..%d, want %d..%d", first, last, lo, hi)
	}
	for i := lo; i <= hi && hi != 0; i++ {
		var got raft.Log
		if err := l.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := entry(i)
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
		}
	}
	for _, i := range []uint64{lo - 1, hi + 1} {
		if i == 0 {
			continue
		}
		var got raft.Log
		if err := l.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) outside the log: %v, want ErrLogNotFound", i, err)
		}
	}
}

func TestLogOperations(t *testing.T) {
	type step struct {
		store  [2]uint64 // append lo..hi
		del    [2]uint64 // delete lo..hi
		reopen bool
	}
	tests := []struct {
		name   string
		steps  []step
		lo, hi uint64
	}{
		{"append", []step{{store: [2]uint64{1, 100}}}, 1, 100},
		{"append in batches over segments", []step{{store: [2]uint64{1, 40}}, {store: [2]uint64{41, 90}}, {store: [2]uint64{91, 300}}}, 1, 300},
		{"reopen", []step{{store: [2]uint64{1, 300}}, {reopen: true}}, 1, 300},
		{"compact head", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{1, 150}}}, 151, 300},
		{"compact head and reopen keeps a suffix", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{1, 150}}, {reopen: true}, {del: [2]uint64{1, 150}}}, 151, 300},
		{"cut tail", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{201, 300}}}, 1, 200},
		{"cut tail then append", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{201, 300}}, {store: [2]uint64{201, 250}}}, 1, 250},
		{"cut tail, reopen, append", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{120, 300}}, {reopen: true}, {store: [2]uint64{120, 130}}, {reopen: true}}, 1, 130},
		{"cut tail inside the first segment", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{2, 300}}, {reopen: true}}, 1, 1},
		{"delete all then restart at a new index", []step{{store: [2]uint64{1, 300}}, {del: [2]uint64{1, 300}}, {store: [2]uint64{1000, 1010}}, {reopen: true}}, 1000, 1010},
		{"delete all and reopen", []step{{store: [2]uint64{5, 300}}, {del: [2]uint64{1, 400}}, {reopen: true}}, 0, 0},
		{"delete outside the log changes nothing", []step{{store: [2]uint64{10, 20}}, {del: [2]uint64{30, 40}}, {del: [2]uint64{1, 5}}}, 10, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, 1024) // about 25 entries per segment
			for _, s := range tt.steps {
				switch {
				case s.reopen:
					l.Close()
					l = open(t, dir, 1024)
				case s.store != [2]uint64{}:
					if err := l.StoreLogs(entries(s.store[0], s.store[1])); err != nil {
						t.Fatal(err)
					}
				default:
					if err := l.DeleteRange(s.del[0], s.del[1]); err != nil {
						t.Fatal(err)
					}
				}
			}
			check(t, l, tt.lo, tt.hi)
		})
	}
}

func TestLogRefusesGapsAndMiddleDeletes(t *testing.T) {
	l := open(t, t.TempDir(), 0)
	if err := l.StoreLogs(entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := l.StoreLogs(entries(12, 13)); err == nil {
		t.Fatal("an append leaving a gap was accepted")
	}
	if err := l.StoreLogs([]*raft.Log{entry(11), entry(13)}); err == nil {
		t.Fatal("a batch with a hole was accepted")
	}
	if err := l.DeleteRange(4, 6); err == nil {
		t.Fatal("a delete from the middle was accepted")
	}
	check(t, l, 1, 10)
}

func TestTornTailIsCut(t *testing.T) {
	for _, damage := range []string{"truncated", "flipped byte", "garbage appended"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, 0)
			if err := l.StoreLogs(entries(1, 20)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
			b, _ := os.ReadFile(seg)
			switch damage {
			case "truncated":
				b = b[:len(b)-3]
			case "flipped byte":
				b[len(b)-2] ^= 0xff
			case "garbage appended":
				b = append(b, 0, 0, 0, 9, 1, 2)
			}
			os.WriteFile(seg, b, 0o600)
			l = open(t, dir, 0)
			want := uint64(19)
			if damage == "garbage appended" {
				want = 20
			}
			check(t, l, 1, want)
			// The cut is on disk: the next append continues cleanly and survives.
			if err := l.StoreLogs(entries(want+1, want+5)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			check(t, open(t, dir, 0), 1, want+5)
		})
	}
}

func TestDamageInASealedSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 512)
	if err := l.StoreLogs(entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := l.StoreLogs(entries(11, 40)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	b, _ := os.ReadFile(seg)
	b[len(b)/2] ^= 0xff
	os.WriteFile(seg, b, 0o600)
	if _, err := Open(dir, Options{SegmentBytes: 512}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged sealed segment: %v, want ErrCorrupt", err)
	}
}

func TestStableStore(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	if _, err := l.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key: %v, want the error Raft matches (\"not found\")", err)
	}
	if _, err := l.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing uint64 key: %v", err)
	}
	if err := l.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if err := l.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetUint64([]byte("CurrentTerm"), 43); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, 0)
	if v, err := l.GetUint64([]byte("CurrentTerm")); err != nil || v != 43 {
		t.Fatalf("term after reopen: %d, %v", v, err)
	}
	if v, err := l.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-2" {
		t.Fatalf("vote after reopen: %q, %v", v, err)
	}
	l.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "stable"))
	b[5] ^= 1
	os.WriteFile(filepath.Join(dir, "stable"), b, 0o600)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged stable file: %v, want ErrCorrupt", err)
	}
}

// TestRaftOnTheLog runs a real single-node Raft on the log, truncates a tail the way a
// follower does, and restarts it: the case raft-wal cannot restart from.
func TestRaftOnTheLog(t *testing.T) {
	dir := t.TempDir()
	start := func() (*raft.Raft, *Log, raft.ServerAddress) {
		l := open(t, dir, 4096)
		conf := raft.DefaultConfig()
		conf.LocalID = "a"
		conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.LogLevel = "error"
		addr, trans := raft.NewInmemTransport("a")
		snaps := raft.NewInmemSnapshotStore()
		if has, _ := raft.HasExistingState(l, l, snaps); !has {
			if err := raft.BootstrapCluster(conf, l, l, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "a", Address: addr}}}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := raft.NewRaft(conf, &countFSM{}, l, l, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for r.State() != raft.Leader {
			if time.Now().After(deadline) {
				t.Fatal("no leader")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return r, l, addr
	}
	r, l, _ := start()
	for i := range 200 {
		if err := r.Apply([]byte{byte(i)}, time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	last := r.LastIndex()
	r.Shutdown().Error()
	// Drop the last 10 entries as a follower does when the leader's log disagrees.
	if err := l.DeleteRange(last-9, last); err != nil {
		t.Fatal(err)
	}
	l.Close()
	r, l, _ = start()
	defer r.Shutdown()
	if err := r.Apply([]byte{1}, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.LastIndex(); got <= last-10 {
		t.Fatalf("after restart and a write the log ends at %d, want past %d", got, last-10)
	}
}

type countFSM struct{ n int }

func (f *countFSM) Apply(*raft.Log) any                 { f.n++; return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// BenchmarkAppend64 is one Raft append batch of 64 entries of 300 bytes, with fsync,
// on the segment log and on raft-boltdb, the store it replaces.
func BenchmarkAppend64(b *testing.B) {
	batch := func(next uint64) []*raft.Log {
		out := make([]*raft.Log, 64)
		for i := range out {
			out[i] = &raft.Log{Index: next + uint64(i), Term: 1, Type: raft.LogCommand, Data: make([]byte, 300)}
		}
		return out
	}
	b.Run("segments", func(b *testing.B) {
		l, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		next := uint64(1)
		for b.Loop() {
			if err := l.StoreLogs(batch(next)); err != nil {
				b.Fatal(err)
			}
			next += 64
		}
	})
	b.Run("boltdb", func(b *testing.B) {
		s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db")})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		next := uint64(1)
		for b.Loop() {
			if err := s.StoreLogs(batch(next)); err != nil {
				b.Fatal(err)
			}
			next += 64
		}
	})
}

// TestConcurrentReadsAppendsAndCompaction runs Raft's three users of the log at once:
// an appender (the leader loop), readers (replication) and a compactor (snapshots).
// Every read of an index in [first, last] must find the entry it wrote; run with -race.
func TestConcurrentReadsAppendsAndCompaction(t *testing.T) {
	l := open(t, t.TempDir(), 2048)
	const total = 3000
	done := make(chan struct{})
	errc := make(chan error, 8)
	go func() {
		defer close(done)
		for next := uint64(1); next <= total; next += 10 {
			if err := l.StoreLogs(entries(next, next+9)); err != nil {
				errc <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	// spin runs step until the appender is done or step fails.
	spin := func(step func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := step(); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range 3 {
		spin(func() error {
			first, _ := l.FirstIndex()
			last, _ := l.LastIndex()
			if last == 0 {
				return nil
			}
			for _, i := range []uint64{first, (first + last) / 2, last} {
				var got raft.Log
				err := l.GetLog(i, &got)
				if errors.Is(err, raft.ErrLogNotFound) {
					continue // compacted between FirstIndex and GetLog
				}
				if err != nil || got.Index != i || string(got.Data) != fmt.Sprintf("data-%d", i) {
					return fmt.Errorf("GetLog(%d) = %d %q, %v", i, got.Index, got.Data, err)
				}
			}
			return nil
		})
	}
	spin(func() error {
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		if last > first+200 {
			if err := l.DeleteRange(first, last-150); err != nil {
				return err
			}
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	<-done
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	first, _ := l.FirstIndex()
	check(t, l, first, total)
}

// TestSlowSyncWarns: an append whose flush takes SlowSync or longer is logged, so an
// operator sees that a write stall was the disk; a fast one is not.
func TestSlowSyncWarns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration // added to the real fdatasync: a slow disk
		slow  time.Duration
		warn  bool
	}{
		{"fast disk", 0, time.Hour, false},
		{"slow disk", 30 * time.Millisecond, 20 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			l, err := Open(t.TempDir(), Options{SlowSync: tc.slow, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.sync = func(f *os.File) error {
				time.Sleep(tc.delay)
				return fdatasync(f)
			}
			if err := l.StoreLogs(entries(1, 3)); err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(logs.String(), "slow fdatasync") && strings.Contains(logs.String(), "entries=3")
			if got != tc.warn {
				t.Fatalf("warned %v, want %v; log: %q", got, tc.warn, logs.String())
			}
		})
	}
}

// Package raftlog is the durable Raft log: append-only segment files that take one
// write and one fsync per append batch, and Raft's small stable store (current term,
// vote) in a file that is replaced atomically.
//
// raft-boltdb, the usual choice, keeps the log in a B+tree and fsyncs twice per batch
// (data pages, then the meta page), and Raft's leader loop waits for that write; the
// segment log does one sequential write instead. raft-wal does the same but cannot
// restart after Raft truncated an uncommitted tail (hashicorp/raft-wal#31); here a
// truncation cuts the file itself, so what is on disk is always a prefix of the log.
//
// Layout: DIR/<first index, 20 digits>.seg files, each a run of records
//
//	length uint32 | crc32c(payload) uint32 | payload
//	payload: index u64 | term u64 | type u8 | appendedAt unix-nanos i64 |
//	         len(data) u32 | data | len(extensions) u32 | extensions
//
// all big-endian. On open, a torn record at the end of the last segment (a crash during
// a write that was never acknowledged) is cut off; damage anywhere else is an error.
package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Options tune a Log. The zero value is usable.
type Options struct {
	// SegmentBytes is the size at which the open segment is sealed and a new one
	// started; compaction deletes whole segments. Default 64 MiB.
	SegmentBytes int64
	// NoSync skips fsync: for tests of logic only, never for data anyone keeps.
	NoSync bool
	// Logger gets a warning for every append whose flush to disk took SlowSync or
	// longer (default 1s, as etcd warns): Raft waits for it, so such a flush stalls
	// every write, and the warning tells an operator that the disk was the cause.
	// Nil discards.
	Logger   *slog.Logger
	SlowSync time.Duration
}

const (
	headerLen   = 8
	fixedLen    = 8 + 8 + 1 + 8 + 4 + 4
	maxRecord   = 1 << 30
	segSuffix   = ".seg"
	defaultSize = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports damage that is not a torn final write.
var ErrCorrupt = errors.New("raftlog: corrupt log")

// segment is one file. offsets[i] is where the record of index first+i starts; size
// is the end of the last whole record.
type segment struct {
	first   uint64
	path    string
	f       *os.File
	offsets []int64
	size    int64
}

func (s *segment) last() uint64 { return s.first + uint64(len(s.offsets)) - 1 }

// Log is a raft.LogStore, raft.MonotonicLogStore and raft.StableStore. It is safe for
// concurrent use: Raft reads entries for replication while its leader loop appends and
// its snapshot goroutine compacts.
//
// Two locks: change serializes the changes (appends and deletions); mu guards what
// readers see (segs, each segment's offsets and size, first, last), which changes only
// with both held. An append writes and syncs holding change alone and publishes the new
// entries under mu afterwards, so readers never wait for a disk flush, which on a busy
// disk can take a few hundred milliseconds.
type Log struct {
	dir  string
	opts Options

	change sync.Mutex
	buf    []byte // encoding scratch, under change

	mu          sync.RWMutex
	segs        []*segment // ascending; appends go to the last
	first, last uint64     // 0, 0 when empty

	stable *stableFile
	sync   func(*os.File) error // fdatasync; tests simulate a slow disk
}

// Open opens (or creates) the log in dir, recovering from a crash as described in the
// package documentation.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSize
	}
	if opts.SlowSync <= 0 {
		opts.SlowSync = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	l := &Log{dir: dir, opts: opts, sync: fdatasync}
	stable, err := openStable(filepath.Join(dir, "stable"), !opts.NoSync)
	if err != nil {
		return nil, err
	}
	l.stable = stable
	if err := l.recover(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) recover() error {
	names, err := filepath.Glob(filepath.Join(l.dir, "*"+segSuffix))
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	type named struct {
		first uint64
		path  string
	}
	var found []named
	for _, p := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), segSuffix), 10, 64)
		if err != nil || first == 0 {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, p)
		}
		found = append(found, named{first, p})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].first < found[j].first })
	for i, n := range found {
		isLast := i == len(found)-1
		s, err := openSegment(n.path, n.first, isLast, !l.opts.NoSync)
		if err != nil {
			return err
		}
		if len(s.offsets) == 0 {
			// Created but never written (a crash right after a rotation), or emptied by
			// a cut: it holds nothing of the log.
			s.f.Close()
			if err := os.Remove(s.path); err != nil {
				return fmt.Errorf("raftlog: %w", err)
			}
			continue
		}
		if len(l.segs) > 0 && s.first != l.last+1 {
			s.f.Close()
			return fmt.Errorf("%w: %s starts at %d, the segment before ends at %d", ErrCorrupt, n.path, s.first, l.last)
		}
		if len(l.segs) == 0 {
			l.first = s.first
		}
		l.segs = append(l.segs, s)
		l.last = s.last()
	}
	return nil
}

// openSegment reads a segment's records to build its offsets. A damaged record ends a
// last segment (it is cut there); in any other segment it is corruption.
func openSegment(path string, first uint64, isLast, sync bool) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	s := &segment{first: first, path: path, f: f}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, info.Size()), 256<<10)
	var hdr [headerLen]byte
	var payload []byte
	var bad string
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err != io.EOF {
				bad = "torn header"
			}
			break
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		if n < fixedLen || n > maxRecord || s.size+headerLen+n > info.Size() {
			bad = "bad length"
			break
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			bad = "torn record"
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:8]) {
			bad = "checksum mismatch"
			break
		}
		if idx := binary.BigEndian.Uint64(payload[0:8]); idx != first+uint64(len(s.offsets)) {
			f.Close()
			return nil, fmt.Errorf("%w: %s holds index %d where %d belongs", ErrCorrupt, path, idx, first+uint64(len(s.offsets)))
		}
		s.offsets = append(s.offsets, s.size)
		s.size += headerLen + n
	}
	if bad != "" || s.size != info.Size() {
		if !isLast {
			f.Close()
			return nil, fmt.Errorf("%w: %s: %s at offset %d", ErrCorrupt, path, bad, s.size)
		}
		// The tail of an append that was never acknowledged.
		if err := f.Truncate(s.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("raftlog: cut torn tail of %s: %w", path, err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, fmt.Errorf("raftlog: %w", err)
			}
		}
	}
	return s, nil
}

// IsMonotonic tells Raft that this log takes no gaps: after installing a snapshot
// Raft empties it instead of appending past a hole.
func (l *Log) IsMonotonic() bool { return true }

// FirstIndex implements raft.LogStore.
func (l *Log) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.first, nil
}

// LastIndex implements raft.LogStore.
func (l *Log) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.last, nil
}

// GetLog implements raft.LogStore.
func (l *Log) GetLog(index uint64, out *raft.Log) error {
	l.mu.RLock()
	if l.last == 0 || index < l.first || index > l.last {
		l.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	s := l.segmentOf(index)
	i := index - s.first
	start := s.offsets[i]
	end := s.size
	if int(i)+1 < len(s.offsets) {
		end = s.offsets[i+1]
	}
	f := s.f
	// ReadAt needs no lock of its own, but a cut or deletion must not close the file
	// under it, so the read stays inside the read lock.
	rec := make([]byte, end-start)
	_, err := f.ReadAt(rec, start)
	l.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("raftlog: read index %d: %w", index, err)
	}
	return decode(rec, index, out)
}

// segmentOf is the segment holding index, which must be in [first, last].
func (l *Log) segmentOf(index uint64) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > index })
	return l.segs[i-1]
}

// StoreLog implements raft.LogStore.
func (l *Log) StoreLog(entry *raft.Log) error { return l.StoreLogs([]*raft.Log{entry}) }

// StoreLogs appends entries, which must continue the log without a gap (an empty log
// takes any start), in one write and one fsync.
func (l *Log) StoreLogs(entries []*raft.Log) error {
	if len(entries) == 0 {
		return nil
	}
	l.change.Lock()
	defer l.change.Unlock()
	// Holding change, nothing else modifies segs, sizes, first or last: they can be
	// read here without mu.
	next := entries[0].Index
	if l.last != 0 && next != l.last+1 {
		return fmt.Errorf("raftlog: append of index %d after %d leaves a gap", next, l.last)
	}
	if next == 0 {
		return errors.New("raftlog: index 0 is not a log index")
	}
	buf := l.buf[:0]
	offs := make([]int64, 0, len(entries))
	for i, e := range entries {
		if e.Index != next+uint64(i) {
			return fmt.Errorf("raftlog: batch is not contiguous at index %d", e.Index)
		}
		offs = append(offs, int64(len(buf)))
		buf = encode(buf, e)
	}
	l.buf = buf[:0]
	if len(buf) > 64<<20 {
		l.buf = nil // do not keep a huge scratch buffer alive
	}

	s := l.tail()
	if s == nil || (s.size > 0 && s.size+int64(len(buf)) > l.opts.SegmentBytes) {
		var err error
		if s, err = l.newSegment(next); err != nil {
			return err
		}
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		return fmt.Errorf("raftlog: append: %w", err)
	}
	if !l.opts.NoSync {
		begin := time.Now()
		if err := l.sync(s.f); err != nil {
			return fmt.Errorf("raftlog: sync: %w", err)
		}
		if took := time.Since(begin); took >= l.opts.SlowSync {
			l.opts.Logger.Warn("slow fdatasync of the Raft log: every write waited for the disk",
				"took", took.Round(time.Millisecond).String(), "bytes", len(buf), "entries", len(entries))
		}
	}
	l.mu.Lock()
	for _, o := range offs {
		s.offsets = append(s.offsets, s.size+o)
	}
	s.size += int64(len(buf))
	if l.last == 0 {
		l.first = next
	}
	l.last = entries[len(entries)-1].Index
	l.mu.Unlock()
	return nil
}

func (l *Log) tail() *segment {
	if len(l.segs) == 0 {
		return nil
	}
	return l.segs[len(l.segs)-1]
}

// newSegment starts the file for entries from first on. The directory is synced so
// that the file itself survives a crash, not only its contents.
func (l *Log) newSegment(first uint64) (*segment, error) {
	path := filepath.Join(l.dir, fmt.Sprintf("%020d%s", first, segSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftlog: new segment: %w", err)
	}
	if err := l.syncDir(); err != nil {
		f.Close()
		return nil, err
	}
	s := &segment{first: first, path: path, f: f}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	return s, nil
}

// DeleteRange implements raft.LogStore. Raft deletes either a head (compaction after a
// snapshot), a tail (a follower's uncommitted entries that conflict with the leader's),
// or everything (after installing a snapshot). Every step leaves a prefix or a suffix
// of the log on disk, so a crash part-way is harmless.
func (l *Log) DeleteRange(lo, hi uint64) error {
	l.change.Lock()
	defer l.change.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == 0 || hi < l.first || lo > l.last || lo > hi {
		return nil
	}
	switch {
	case lo <= l.first && hi >= l.last:
		for len(l.segs) > 0 {
			if err := l.removeSegment(len(l.segs) - 1); err != nil {
				return err
			}
		}
		l.first, l.last = 0, 0
	case lo <= l.first:
		// Whole segments go; the rest of the one holding hi stays on disk, below
		// first, until the whole segment is compacted away.
		for len(l.segs) > 1 && l.segs[1].first <= hi+1 {
			if err := l.removeSegment(0); err != nil {
				return err
			}
		}
		l.first = hi + 1
	case hi >= l.last:
		for l.tail().first >= lo {
			if err := l.removeSegment(len(l.segs) - 1); err != nil {
				return err
			}
		}
		s := l.tail()
		keep := lo - s.first
		cut := s.offsets[keep]
		if err := s.f.Truncate(cut); err != nil {
			return fmt.Errorf("raftlog: cut tail: %w", err)
		}
		if !l.opts.NoSync {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("raftlog: sync: %w", err)
			}
		}
		s.offsets = s.offsets[:keep]
		s.size = cut
		l.last = lo - 1
	default:
		return fmt.Errorf("raftlog: cannot delete %d..%d from the middle of %d..%d", lo, hi, l.first, l.last)
	}
	if len(l.segs) == 0 {
		return l.syncDir()
	}
	return nil
}

// removeSegment deletes segment i (the first or the last) and syncs the directory.
func (l *Log) removeSegment(i int) error {
	s := l.segs[i]
	s.f.Close()
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("raftlog: delete segment: %w", err)
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	l.segs = append(l.segs[:i], l.segs[i+1:]...)
	return nil
}

func (l *Log) syncDir() error {
	if l.opts.NoSync {
		return nil
	}
	return syncDir(l.dir)
}

// syncDir makes the creation, removal or renaming of files in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raftlog: sync dir: %w", err)
	}
	return nil
}

// Close closes the files.
func (l *Log) Close() error {
	l.change.Lock()
	defer l.change.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	var first error
	for _, s := range l.segs {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	l.segs = nil
	return first
}

// Set implements raft.StableStore.
func (l *Log) Set(key, val []byte) error { return l.stable.set(string(key), val) }

// Get implements raft.StableStore. A missing key is the error "not found", the text
// Raft matches on.
func (l *Log) Get(key []byte) ([]byte, error) { return l.stable.get(string(key)) }

// SetUint64 implements raft.StableStore.
func (l *Log) SetUint64(key []byte, val uint64) error {
	return l.stable.set(string(key), binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore.
func (l *Log) GetUint64(key []byte) (uint64, error) {
	v, err := l.stable.get(string(key))
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: stable key %q is %d bytes, not 8", ErrCorrupt, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func encode(buf []byte, e *raft.Log) []byte {
	n := fixedLen + len(e.Data) + len(e.Extensions)
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = binary.BigEndian.AppendUint32(buf, 0) // the checksum, filled in below
	buf = binary.BigEndian.AppendUint64(buf, e.Index)
	buf = binary.BigEndian.AppendUint64(buf, e.Term)
	buf = append(buf, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Data)))
	buf = append(buf, e.Data...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Extensions)))
	buf = append(buf, e.Extensions...)
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+headerLen:], crcTable))
	return buf
}

// decode fills out from rec, one whole record; out's slices point into rec.
func decode(rec []byte, index uint64, out *raft.Log) error {
	if len(rec) < headerLen+fixedLen {
		return fmt.Errorf("%w: record of index %d is %d bytes", ErrCorrupt, index, len(rec))
	}
	p := rec[headerLen:]
	if int(binary.BigEndian.Uint32(rec[0:4])) != len(p) || crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(rec[4:8]) {
		return fmt.Errorf("%w: record of index %d fails its checksum", ErrCorrupt, index)
	}
	if got := binary.BigEndian.Uint64(p[0:8]); got != index {
		return fmt.Errorf("%w: record holds index %d, want %d", ErrCorrupt, got, index)
	}
	out.Index = index
	out.Term = binary.BigEndian.Uint64(p[8:16])
	out.Type = raft.LogType(p[16])
	out.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(p[17:25])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	dn := int(binary.BigEndian.Uint32(p[25:29]))
	rest := p[29:]
	if dn > len(rest)-4 {
		return fmt.Errorf("%w: record of index %d: data length %d", ErrCorrupt, index, dn)
	}
	out.Data = nilIfEmpty(rest[:dn:dn])
	rest = rest[dn:]
	en := int(binary.BigEndian.Uint32(rest[0:4]))
	if en != len(rest)-4 {
		return fmt.Errorf("%w: record of index %d: extensions length %d", ErrCorrupt, index, en)
	}
	out.Extensions = nilIfEmpty(rest[4:])
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

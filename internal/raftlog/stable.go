package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// errNotFound's text is what Raft compares a stable-store miss against.
var errNotFound = errors.New("not found")

// stableFile holds Raft's few stable keys (current term, last vote) in one small file,
// rewritten whole on each Set and swapped in by rename: the file on disk is always
// either the old or the new state, never a mix. Raft sets these keys only on term
// changes and votes, so the rewrite costs nothing that matters.
//
// Format: count u32, then per key: len u16 | key | len u32 | value; then crc32c of all
// that, big-endian.
type stableFile struct {
	path string
	sync bool

	mu   sync.Mutex
	vals map[string][]byte
}

func openStable(path string, sync bool) (*stableFile, error) {
	s := &stableFile{path: path, sync: sync, vals: map[string][]byte{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if err := s.parse(b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return s, nil
}

func (s *stableFile) parse(b []byte) error {
	if len(b) < 8 {
		return errors.New("too short")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return errors.New("checksum mismatch")
	}
	n := binary.BigEndian.Uint32(body)
	body = body[4:]
	for range n {
		if len(body) < 2 {
			return errors.New("truncated key")
		}
		kl := int(binary.BigEndian.Uint16(body))
		if len(body) < 2+kl+4 {
			return errors.New("truncated key")
		}
		key := string(body[2 : 2+kl])
		body = body[2+kl:]
		vl := int(binary.BigEndian.Uint32(body))
		if len(body) < 4+vl {
			return errors.New("truncated value")
		}
		s.vals[key] = append([]byte(nil), body[4:4+vl]...)
		body = body[4+vl:]
	}
	if len(body) != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

func (s *stableFile) get(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vals[key]
	if !ok {
		return nil, errNotFound
	}
	return append([]byte(nil), v...), nil
}

func (s *stableFile) set(key string, val []byte) error {
	if len(key) > 1<<16-1 {
		return fmt.Errorf("raftlog: stable key of %d bytes is too long", len(key))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string][]byte, len(s.vals)+1)
	for k, v := range s.vals {
		next[k] = v
	}
	next[key] = append([]byte(nil), val...)
	if err := s.write(next); err != nil {
		return err
	}
	s.vals = next
	return nil
}

func (s *stableFile) write(vals map[string][]byte) error {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(vals[k])))
		b = append(b, vals[k]...)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))

	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: write stable store: %w", err)
	}
	if s.sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("raftlog: sync stable store: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if !s.sync {
		return nil
	}
	return syncDir(filepath.Dir(s.path))
}

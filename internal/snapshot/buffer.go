package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// buffer holds a state stream whose length must be known before it can be written out
// (a tar header comes first) or that must be read more than once (verified, parsed,
// then restored). Up to memLimit bytes it stays in memory; past that it moves to a
// temporary file, so a large snapshot costs disk, not heap.
type buffer struct {
	dir      string
	memLimit int64
	mem      bytes.Buffer
	f        *os.File
	n        int64
	err      error // the first write error: a full disk, not a bad archive
}

func newBuffer(dir string, memLimit int64) *buffer {
	return &buffer{dir: dir, memLimit: memLimit}
}

func (b *buffer) Write(p []byte) (int, error) {
	if b.f == nil && int64(b.mem.Len()+len(p)) > b.memLimit {
		f, err := os.CreateTemp(b.dir, "wolke-snapshot-*.tmp")
		if err != nil {
			b.err = fmt.Errorf("spill to disk: %w", err)
			return 0, b.err
		}
		b.f = f
		if _, err := f.Write(b.mem.Bytes()); err != nil {
			b.err = fmt.Errorf("spill to disk: %w", err)
			return 0, b.err
		}
		b.mem = bytes.Buffer{}
	}
	var n int
	var err error
	if b.f != nil {
		n, err = b.f.Write(p)
	} else {
		n, err = b.mem.Write(p)
	}
	b.n += int64(n)
	if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

// Size is the number of bytes written.
func (b *buffer) Size() int64 { return b.n }

// OnDisk reports whether the contents moved to a temporary file.
func (b *buffer) OnDisk() bool { return b.f != nil }

// Reader returns a new reader over everything written, from the start. Readers are
// independent of each other; none may be used after Close.
func (b *buffer) Reader() io.Reader {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.n)
	}
	return bytes.NewReader(b.mem.Bytes())
}

// Close releases the memory or removes the temporary file.
func (b *buffer) Close() error {
	b.mem = bytes.Buffer{}
	if b.f == nil {
		return nil
	}
	name := b.f.Name()
	err := b.f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	b.f = nil
	return err
}

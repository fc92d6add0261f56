// Package snapshot reads and writes wolke's snapshot archives, the files behind
// `GET/PUT /v1/snapshot` and `wolke snapshot save|restore|inspect`.
//
// The archive has Consul's layout, so operators recognise it: a gzip-compressed tar of
//
//	meta.json    the Meta below, as JSON
//	state.bin    the state machine's snapshot stream (fsm.WriteSnapshot)
//	SHA256SUMS   "<hex>  <name>" lines for meta.json and state.bin, sha256sum's format
//
// Read accepts an archive only when it is complete: exactly these three members, each
// checksum right, meta.json consistent with state.bin, the gzip trailer intact and no
// bytes after it. The package knows nothing of state.bin's contents; callers parse it
// (fsm.ReadSnapshot) before they trust it.
package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Member names inside the archive.
const (
	MetaFile  = "meta.json"
	StateFile = "state.bin"
	SumsFile  = "SHA256SUMS"
)

// Version is the archive format version written in Meta.Version. It is also the Raft
// snapshot version the state is restored with (hashicorp/raft accepts 0 and 1).
const Version = 1

// Errors callers translate for the user.
var (
	// ErrCorrupt: the input is not a complete, intact wolke snapshot archive.
	ErrCorrupt = errors.New("snapshot: invalid archive")
	// ErrTooLarge: state.bin is larger than Options.MaxStateBytes.
	ErrTooLarge = errors.New("snapshot: state too large")
)

// Meta describes a snapshot; it is meta.json. ID, Size, Index, Term and Version carry
// the names and meaning of Consul's (Raft's) snapshot metadata.
type Meta struct {
	// ID names the snapshot: "<term>-<index>-<unix ms>" like Raft's snapshot IDs.
	ID string
	// Size is the length of state.bin in bytes.
	Size int64
	// Index is the highest Raft index reflected in the state.
	Index uint64
	// Term is the Raft term of the server that took the snapshot.
	Term uint64
	// Version is the archive format version (Version).
	Version int
	// Build is the wolke version that wrote the snapshot.
	Build string
	// Created is when the snapshot was taken.
	Created time.Time
}

// filled returns m with a zero Version set to Version and an empty ID derived from
// Term, Index and Created; Created is in UTC, as it reads back from JSON.
func (m Meta) filled() Meta {
	m.Created = m.Created.UTC()
	if m.Version == 0 {
		m.Version = Version
	}
	if m.ID == "" {
		m.ID = fmt.Sprintf("%d-%d-%d", m.Term, m.Index, m.Created.UnixMilli())
	}
	return m
}

// Options bound the resources Read and New use. The zero value means the defaults.
type Options struct {
	// TempDir holds state that does not fit in memory; "" is os.TempDir().
	TempDir string
	// MemoryBytes is how much of state.bin is kept in memory before it moves to a
	// temporary file. Default 16 MiB.
	MemoryBytes int64
	// MaxStateBytes refuses a larger state.bin (ErrTooLarge), which also defuses a
	// decompression bomb: the gzip layer can expand its input a thousandfold. Default
	// 8 GiB, far beyond what an in-memory state store holds.
	MaxStateBytes int64
}

const (
	defaultMemoryBytes   = 16 << 20
	defaultMaxStateBytes = 8 << 30
	// maxSmallMember bounds meta.json and SHA256SUMS, which are a few hundred bytes.
	maxSmallMember = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = defaultMemoryBytes
	}
	if o.MaxStateBytes <= 0 {
		o.MaxStateBytes = defaultMaxStateBytes
	}
	return o
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Write writes an archive of state to w. meta.Size must be state's exact length (a tar
// header precedes the data); a zero Version becomes Version and an empty ID is derived
// from Term, Index and Created.
func Write(w io.Writer, meta Meta, state io.Reader) error {
	meta = meta.filled()
	metaJSON, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot: encode meta: %w", err)
	}
	metaJSON = append(metaJSON, '\n')
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	var sums bytes.Buffer
	member := func(name string, size int64, r io.Reader) error {
		h := sha256.New()
		hdr := &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: meta.Created, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(io.MultiWriter(tw, h), r)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s: %d bytes, want %d", name, n, size)
		}
		if name != SumsFile {
			fmt.Fprintf(&sums, "%x  %s\n", h.Sum(nil), name)
		}
		return nil
	}
	err = member(MetaFile, int64(len(metaJSON)), bytes.NewReader(metaJSON))
	if err == nil {
		err = member(StateFile, meta.Size, state)
	}
	if err == nil {
		err = member(SumsFile, int64(sums.Len()), bytes.NewReader(sums.Bytes()))
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		return fmt.Errorf("snapshot: write archive: %w", err)
	}
	return nil
}

// Archive is a verified archive: its metadata and its state, held in memory or in a
// temporary file (see Options). Close it when done.
type Archive struct {
	Meta  Meta
	state *buffer
}

// State returns a new reader over the verified state.bin, from its start.
func (a *Archive) State() io.Reader { return a.state.Reader() }

// Close releases the state.
func (a *Archive) Close() error { return a.state.Close() }

// Verify reads a whole archive and checks it; it keeps nothing but the metadata.
func Verify(r io.Reader, opt Options) (Meta, error) {
	a, err := Read(r, opt)
	if err != nil {
		return Meta{}, err
	}
	a.Close()
	return a.Meta, nil
}

// sourceReader remembers the first error of the underlying reader other than EOF, so
// that a failing source (a dropped connection, a body over its limit) is reported as
// such and not as a corrupt archive.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// Read reads a whole archive from r and verifies it (see the package comment). Errors
// wrap ErrCorrupt for a bad archive, ErrTooLarge for an oversized state, or the
// source's own error when reading r failed.
func Read(r io.Reader, opt Options) (*Archive, error) {
	opt = opt.withDefaults()
	src := &sourceReader{r: r}
	a, err := read(src, opt)
	if src.err != nil {
		err = fmt.Errorf("snapshot: read: %w", src.err)
	}
	if err != nil {
		if a != nil {
			a.Close()
		}
		return nil, err
	}
	return a, nil
}

func read(src io.Reader, opt Options) (*Archive, error) {
	// gzip reads a bufio.Reader byte by byte (it is an io.ByteReader), so after the gzip
	// member ends br is exactly at the first byte behind it.
	br := bufio.NewReader(src)
	gz, err := gzip.NewReader(br)
	if err != nil {
		return nil, corrupt("not a gzip stream: %v", err)
	}
	gz.Multistream(false)
	a := &Archive{state: newBuffer(opt.TempDir, opt.MemoryBytes)}
	tr := tar.NewReader(gz)
	var metaJSON, sumsText []byte
	got := map[string][]byte{} // member name -> its SHA-256
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a, corrupt("reading the tar stream: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return a, corrupt("unexpected member %q (type %q)", hdr.Name, hdr.Typeflag)
		}
		if _, dup := got[hdr.Name]; dup {
			return a, corrupt("duplicate member %q", hdr.Name)
		}
		h := sha256.New()
		switch hdr.Name {
		case MetaFile, SumsFile:
			if hdr.Size > maxSmallMember {
				return a, corrupt("%s is %d bytes, more than %d", hdr.Name, hdr.Size, maxSmallMember)
			}
			b, err := io.ReadAll(io.TeeReader(tr, h))
			if err != nil {
				return a, corrupt("reading %s: %v", hdr.Name, err)
			}
			if hdr.Name == MetaFile {
				metaJSON = b
			} else {
				sumsText = b
			}
		case StateFile:
			if hdr.Size > opt.MaxStateBytes {
				return a, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, StateFile, hdr.Size, opt.MaxStateBytes)
			}
			n, err := io.Copy(io.MultiWriter(a.state, h), tr)
			if a.state.err != nil {
				return a, fmt.Errorf("snapshot: buffering %s: %w", StateFile, a.state.err)
			}
			if err != nil {
				return a, corrupt("reading %s: %v", StateFile, err)
			}
			if n != hdr.Size {
				return a, corrupt("%s is %d bytes, its header says %d", StateFile, n, hdr.Size)
			}
		default:
			return a, corrupt("unexpected member %q", hdr.Name)
		}
		got[hdr.Name] = h.Sum(nil)
	}
	// The tar end marker may be followed by zero padding (tar(1) pads to 10 KiB
	// records), but by nothing else.
	if err := onlyZeros(gz); err != nil {
		return a, err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return a, corrupt("unexpected data after the end of the archive")
		}
		return a, corrupt("after the archive: %v", err)
	}
	for _, name := range []string{MetaFile, StateFile, SumsFile} {
		if _, ok := got[name]; !ok {
			return a, corrupt("missing member %q", name)
		}
	}
	if err := checkSums(sumsText, got); err != nil {
		return a, err
	}
	if err := json.Unmarshal(metaJSON, &a.Meta); err != nil {
		return a, corrupt("%s: %v", MetaFile, err)
	}
	switch {
	case a.Meta.Version != Version:
		return a, corrupt("unsupported snapshot version %d (this wolke reads %d)", a.Meta.Version, Version)
	case a.Meta.Size != a.state.Size():
		return a, corrupt("%s says %s is %d bytes, it is %d", MetaFile, StateFile, a.Meta.Size, a.state.Size())
	}
	return a, nil
}

// onlyZeros reads r to its end and fails if it holds anything but zero bytes. For the
// gzip reader, reaching the end also checks the member's CRC and length.
func onlyZeros(r io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return corrupt("unexpected data after the end of the tar stream")
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corrupt("gzip stream: %v", err)
		}
	}
}

// checkSums compares SHA256SUMS with the checksums of the members read.
func checkSums(text []byte, got map[string][]byte) error {
	want := map[string]bool{MetaFile: true, StateFile: true}
	listed := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		b, err := hex.DecodeString(sum)
		if !ok || err != nil || len(b) != sha256.Size {
			return corrupt("%s line %d is not \"<sha256>  <name>\"", SumsFile, i+1)
		}
		if !want[name] || listed[name] {
			return corrupt("%s lists %q unexpectedly", SumsFile, name)
		}
		listed[name] = true
		if !bytes.Equal(b, got[name]) {
			return corrupt("checksum mismatch for %s", name)
		}
	}
	for name := range want {
		if !listed[name] {
			return corrupt("%s has no checksum for %s", SumsFile, name)
		}
	}
	return nil
}

// Snapshot is a captured state ready to be sent as an archive: its metadata is complete
// (Size included) before the first byte goes out, so a failure while capturing is an
// error answer, not a truncated download (Consul does the same).
type Snapshot struct {
	meta  Meta
	state *buffer
}

// New captures a state with writeState, which writes the state stream, and returns it
// as a Snapshot whose Meta has Size, Version and ID filled in.
func New(meta Meta, writeState func(io.Writer) error, opt Options) (*Snapshot, error) {
	opt = opt.withDefaults()
	buf := newBuffer(opt.TempDir, opt.MemoryBytes)
	if err := writeState(buf); err != nil {
		buf.Close()
		return nil, err
	}
	meta.Size = buf.Size()
	return &Snapshot{meta: meta.filled(), state: buf}, nil
}

// Meta returns the snapshot's metadata.
func (s *Snapshot) Meta() Meta { return s.meta }

// Index is the highest Raft index the snapshot reflects.
func (s *Snapshot) Index() uint64 { return s.meta.Index }

// WriteTo writes the archive to w; it may be called more than once.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := Write(cw, s.meta, s.state.Reader())
	return cw.n, err
}

// Close releases the captured state.
func (s *Snapshot) Close() error { return s.state.Close() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

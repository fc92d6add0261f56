package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func testMeta(size int64) Meta {
	return Meta{Index: 42, Term: 3, Build: "test", Size: size,
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func writeArchive(t *testing.T, state []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, testMeta(int64(len(state))), bytes.NewReader(state)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 200<<10+17)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name  string
		state []byte
		opt   Options
		disk  bool
	}{
		{"empty state", nil, Options{}, false},
		{"small, in memory", []byte("WOLKESNAP\x01 some state"), Options{}, false},
		{"large, spilled to a temp file", big, Options{MemoryBytes: 64 << 10, TempDir: t.TempDir()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arc := writeArchive(t, tc.state)
			a, err := Read(bytes.NewReader(arc), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			want := testMeta(int64(len(tc.state)))
			want.Version, want.ID = Version, "3-42-1735787045000"
			if a.Meta != want {
				t.Errorf("meta = %+v, want %+v", a.Meta, want)
			}
			if a.state.OnDisk() != tc.disk {
				t.Errorf("on disk = %v, want %v", a.state.OnDisk(), tc.disk)
			}
			// State can be read more than once, each time from the start.
			for range 2 {
				got, err := io.ReadAll(a.State())
				if err != nil || !bytes.Equal(got, tc.state) {
					t.Fatalf("state: %d bytes (want %d), %v", len(got), len(tc.state), err)
				}
			}
			var name string
			if a.state.f != nil {
				name = a.state.f.Name()
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if name != "" {
				if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("temp file %s left behind: %v", name, err)
				}
			}
		})
	}
}

func TestSnapshotNewWriteTo(t *testing.T) {
	state := []byte("the state stream")
	s, err := New(Meta{Index: 7, Term: 2, Created: time.UnixMilli(1000)}, func(w io.Writer) error {
		_, err := w.Write(state)
		return err
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := s.Meta(); m.Size != int64(len(state)) || m.ID != "2-7-1000" || m.Version != Version || s.Index() != 7 {
		t.Fatalf("meta %+v", m)
	}
	var out bytes.Buffer
	n, err := s.WriteTo(&out)
	if err != nil || n != int64(out.Len()) {
		t.Fatalf("WriteTo: %d, %v (wrote %d)", n, err, out.Len())
	}
	m, err := Verify(&out, Options{})
	if err != nil || m != s.Meta() {
		t.Fatalf("Verify: %+v, %v", m, err)
	}

	failed := errors.New("boom")
	if _, err := New(Meta{}, func(io.Writer) error { return failed }, Options{}); !errors.Is(err, failed) {
		t.Fatalf("New with a failing writer: %v", err)
	}
}

// member is one tar entry of a hand-built archive.
type member struct {
	name string
	data []byte
	typ  byte
}

// build makes an archive from members, optionally followed by bytes inside the gzip
// stream (after the tar end) and bytes after the gzip stream.
func build(t *testing.T, members []member, insideGzip, afterGzip []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(m.data))
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o600, Size: size, Typeflag: typ}); err != nil {
			t.Fatal(err)
		}
		if size > 0 {
			tw.Write(m.data)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Write(insideGzip)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(afterGzip)
	return buf.Bytes()
}

func sum(name string, data []byte) string { return fmt.Sprintf("%x  %s\n", sha256.Sum256(data), name) }

func metaJSON(m Meta) []byte {
	b, _ := json.Marshal(m)
	return b
}

func TestReadRejects(t *testing.T) {
	state := []byte("WOLKESNAP\x01 state records")
	goodMeta := testMeta(int64(len(state)))
	goodMeta.Version = Version
	meta := metaJSON(goodMeta)
	sums := sum(MetaFile, meta) + sum(StateFile, state)
	good := []member{{MetaFile, meta, 0}, {StateFile, state, 0}, {SumsFile, []byte(sums), 0}}
	with := func(ms ...member) []member { return ms }
	valid := writeArchive(t, state)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x40
	crc := bytes.Clone(valid)
	crc[len(crc)-6] ^= 0x01 // inside the gzip trailer's CRC-32

	badSizeMeta := goodMeta
	badSizeMeta.Size++
	v2 := goodMeta
	v2.Version = 2
	otherState := []byte("WOLKESNAP\x01 other records")

	for _, tc := range []struct {
		name  string
		in    []byte
		want  string
		isErr error
	}{
		{"empty input", nil, "not a gzip stream", ErrCorrupt},
		{"not gzip", []byte("hello, this is not an archive"), "not a gzip stream", ErrCorrupt},
		{"truncated to half", valid[:len(valid)/2], "", ErrCorrupt},
		{"truncated by one byte", valid[:len(valid)-1], "", ErrCorrupt},
		{"truncated before the gzip trailer", valid[:len(valid)-8], "", ErrCorrupt},
		{"gzip header only", valid[:10], "", ErrCorrupt},
		{"flipped byte", flipped, "", ErrCorrupt},
		{"bad gzip CRC", crc, "gzip stream", ErrCorrupt},
		{"junk after the gzip stream", append(bytes.Clone(valid), "junk"...), "after the end of the archive", ErrCorrupt},
		{"second gzip member", append(bytes.Clone(valid), valid...), "after the end of the archive", ErrCorrupt},
		{"junk after the tar end", build(t, good, []byte("junk"), nil), "after the end of the tar stream", ErrCorrupt},
		{"wrong state checksum", build(t, with(good[0], good[1], member{SumsFile, []byte(sum(MetaFile, meta) + sum(StateFile, otherState)), 0}), nil, nil),
			"checksum mismatch for state.bin", ErrCorrupt},
		{"state replaced, sums kept", build(t, with(good[0], member{StateFile, otherState, 0}, good[2]), nil, nil),
			"checksum mismatch for state.bin", ErrCorrupt},
		{"meta replaced, sums kept", build(t, with(member{MetaFile, metaJSON(v2), 0}, good[1], good[2]), nil, nil),
			"checksum mismatch for meta.json", ErrCorrupt},
		{"missing state.bin", build(t, with(good[0], good[2]), nil, nil), `missing member "state.bin"`, ErrCorrupt},
		{"missing meta.json", build(t, with(good[1], good[2]), nil, nil), `missing member "meta.json"`, ErrCorrupt},
		{"missing SHA256SUMS", build(t, with(good[0], good[1]), nil, nil), `missing member "SHA256SUMS"`, ErrCorrupt},
		{"empty tar", build(t, nil, nil, nil), "missing member", ErrCorrupt},
		{"extra member", build(t, with(good[0], good[1], member{"junk.txt", []byte("x"), 0}, good[2]), nil, nil),
			`unexpected member "junk.txt"`, ErrCorrupt},
		{"directory member", build(t, with(member{"dir/", nil, tar.TypeDir}, good[0], good[1], good[2]), nil, nil),
			`unexpected member "dir/"`, ErrCorrupt},
		{"duplicate member", build(t, with(good[0], good[1], good[1], good[2]), nil, nil), `duplicate member "state.bin"`, ErrCorrupt},
		{"sums without state", build(t, with(good[0], good[1], member{SumsFile, []byte(sum(MetaFile, meta)), 0}), nil, nil),
			"no checksum for state.bin", ErrCorrupt},
		{"sums listing junk", build(t, with(good[0], good[1], member{SumsFile, []byte(sums + sum("junk", nil)), 0}), nil, nil),
			`lists "junk"`, ErrCorrupt},
		{"sums malformed", build(t, with(good[0], good[1], member{SumsFile, []byte("nonsense\n"), 0}), nil, nil),
			"line 1", ErrCorrupt},
		{"meta not JSON", build(t, with(member{MetaFile, []byte("{"), 0}, good[1], member{SumsFile, []byte(sum(MetaFile, []byte("{")) + sum(StateFile, state)), 0}), nil, nil),
			"meta.json", ErrCorrupt},
		{"meta size wrong", build(t, with(member{MetaFile, metaJSON(badSizeMeta), 0}, good[1], member{SumsFile, []byte(sum(MetaFile, metaJSON(badSizeMeta)) + sum(StateFile, state)), 0}), nil, nil),
			"meta.json says state.bin is", ErrCorrupt},
		{"unsupported version", build(t, with(member{MetaFile, metaJSON(v2), 0}, good[1], member{SumsFile, []byte(sum(MetaFile, metaJSON(v2)) + sum(StateFile, state)), 0}), nil, nil),
			"unsupported snapshot version 2", ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			a, err := Read(bytes.NewReader(tc.in), Options{TempDir: tmp, MemoryBytes: 8})
			if err == nil {
				a.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, tc.isErr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want %v containing %q", err, tc.isErr, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temp files left behind: %v", left)
			}
		})
	}

	// Zero padding after the tar end marker (tar(1) pads to 10 KiB records) is fine.
	if _, err := Verify(bytes.NewReader(build(t, good, make([]byte, 9216), nil)), Options{}); err != nil {
		t.Errorf("zero-padded archive: %v", err)
	}
	if _, err := Verify(bytes.NewReader(build(t, good, nil, nil)), Options{}); err != nil {
		t.Errorf("hand-built valid archive: %v", err)
	}
}

func TestReadTooLarge(t *testing.T) {
	arc := writeArchive(t, make([]byte, 1000))
	_, err := Read(bytes.NewReader(arc), Options{MaxStateBytes: 999})
	if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := Read(bytes.NewReader(arc), Options{MaxStateBytes: 1000}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestReadSourceError(t *testing.T) {
	arc := writeArchive(t, []byte("state"))
	dropped := errors.New("connection dropped")
	_, err := Read(&failingReader{r: bytes.NewReader(arc[:len(arc)/2]), err: dropped}, Options{})
	if !errors.Is(err, dropped) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the source's error and not ErrCorrupt", err)
	}
}

func TestWriteSizeMismatch(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, testMeta(10), strings.NewReader("short")); err == nil {
		t.Fatal("a state shorter than meta.Size was written")
	}
}

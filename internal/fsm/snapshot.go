package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// Snapshot stream format: a header, then records of msgpack (record type, value), then
// an end record carrying the number of records, so a truncated stream is detected even
// when it breaks between records.
var snapshotMagic = []byte("WOLKESNAP\x01")

// recordType tags a snapshot record. ONLY APPEND TO THIS LIST.
type recordType uint8

const (
	recordEnd       recordType = 0
	recordKV        recordType = 1
	recordTombstone recordType = 2
	recordIndex     recordType = 3
	recordSession   recordType = 4
	recordNode      recordType = 5
	recordService   recordType = 6
	recordCheck     recordType = 7
)

// ErrCorrupt means a snapshot stream is not a complete wolke snapshot.
var ErrCorrupt = errors.New("fsm: corrupt or truncated snapshot")

type snapshot struct {
	snap *state.Snapshot
}

var _ raft.FSMSnapshot = (*snapshot)(nil)

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.snap); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.snap.Close() }

// WriteSnapshot streams a state snapshot to w.
func WriteSnapshot(w io.Writer, snap *state.Snapshot) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(snapshotMagic); err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	enc := command.NewEncoder(bw)
	var n uint64
	write := func(t recordType, v any) error {
		n++
		if err := enc.Encode(uint8(t)); err != nil {
			return err
		}
		return enc.Encode(v)
	}
	err := snap.Indexes(func(ti state.TableIndex) error { return write(recordIndex, &ti) })
	if err == nil {
		err = snap.KVs(func(e *state.KVEntry) error { return write(recordKV, e) })
	}
	if err == nil {
		err = snap.Tombstones(func(ts state.Tombstone) error { return write(recordTombstone, &ts) })
	}
	if err == nil {
		err = snap.Sessions(func(sess *state.Session) error { return write(recordSession, sess) })
	}
	if err == nil {
		err = snap.Nodes(func(n *state.Node) error { return write(recordNode, n) })
	}
	if err == nil {
		err = snap.Services(func(svc *state.Service) error { return write(recordService, svc) })
	}
	if err == nil {
		err = snap.Checks(func(c *state.Check) error { return write(recordCheck, c) })
	}
	if err == nil {
		if err = enc.Encode(uint8(recordEnd)); err == nil {
			err = enc.Encode(n)
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot replaces store's contents with the snapshot in r. On any error the store
// is left exactly as it was.
func ReadSnapshot(r io.Reader, store *state.Store) error {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != string(snapshotMagic) {
		return fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	restore, err := store.NewRestore()
	if err != nil {
		return err
	}
	defer restore.Abort()
	dec := command.NewDecoder(br)
	var n uint64
	for {
		var tb uint8
		if err := dec.Decode(&tb); err != nil {
			return fmt.Errorf("%w: %d records, then %v", ErrCorrupt, n, err)
		}
		switch recordType(tb) {
		case recordEnd:
			var want uint64
			if err := dec.Decode(&want); err != nil || want != n {
				return fmt.Errorf("%w: end record says %d records, read %d", ErrCorrupt, want, n)
			}
			restore.Commit()
			return nil
		case recordKV:
			var e state.KVEntry
			if err = dec.Decode(&e); err == nil {
				err = restore.KV(&e)
			}
		case recordTombstone:
			var ts state.Tombstone
			if err = dec.Decode(&ts); err == nil {
				err = restore.Tombstone(ts)
			}
		case recordSession:
			var sess state.Session
			if err = dec.Decode(&sess); err == nil {
				err = restore.Session(&sess)
			}
		case recordNode:
			var n state.Node
			if err = dec.Decode(&n); err == nil {
				err = restore.Node(&n)
			}
		case recordService:
			var svc state.Service
			if err = dec.Decode(&svc); err == nil {
				err = restore.Service(&svc)
			}
		case recordCheck:
			var c state.Check
			if err = dec.Decode(&c); err == nil {
				err = restore.Check(&c)
			}
		case recordIndex:
			var ti state.TableIndex
			if err = dec.Decode(&ti); err == nil {
				err = restore.Index(ti)
			}
		default:
			return fmt.Errorf("%w: unknown record type %d", ErrCorrupt, tb)
		}
		if err != nil {
			return fmt.Errorf("%w: record %d: %v", ErrCorrupt, n, err)
		}
		n++
	}
}

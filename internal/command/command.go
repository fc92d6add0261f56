// Package command defines the writes that travel through the Raft log and their binary
// encoding. Each entry is one byte of format version, one byte of type, then the request
// in msgpack. The type list is append-only: a number, once used, keeps its meaning
// forever, because old log entries and snapshots are replayed by new binaries.
package command

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/wolke-platform/wolke/internal/state"
)

// Version is the entry format this binary writes.
const Version byte = 1

// Type tags a command. ONLY APPEND TO THIS LIST.
type Type uint8

const (
	// KVS is a single-key write (set, cas, delete, ...): a KVSRequest.
	KVS Type = 1
	// TombstoneReap forgets old deletions: a TombstoneReapRequest.
	TombstoneReap Type = 2
	// Session creates or destroys a session: a SessionRequest.
	Session Type = 3
	// Txn applies several KV operations atomically: a TxnRequest.
	Txn Type = 4
	// Register upserts a catalog node, service and checks: a state.RegisterRequest.
	Register Type = 5
	// Deregister removes a catalog node, service or check: a DeregisterRequest.
	Deregister Type = 6
)

// IgnoreUnknown, set on a type, lets a binary that does not know the type skip the entry
// instead of stopping. Only for commands whose loss cannot corrupt state.
const IgnoreUnknown Type = 0x80

func (t Type) String() string {
	switch t &^ IgnoreUnknown {
	case KVS:
		return "kvs"
	case TombstoneReap:
		return "tombstone-reap"
	case Session:
		return "session"
	case Txn:
		return "txn"
	case Register:
		return "register"
	case Deregister:
		return "deregister"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// KVSOp is the verb of a KVS command.
type KVSOp string

// The KV verbs; the strings are Consul's.
const (
	KVSet        KVSOp = "set"
	KVCAS        KVSOp = "cas"
	KVDelete     KVSOp = "delete"
	KVDeleteCAS  KVSOp = "delete-cas"
	KVDeleteTree KVSOp = "delete-tree"
	KVLock       KVSOp = "lock"
	KVUnlock     KVSOp = "unlock"
)

// KVSRequest writes one key (or a tree for delete-tree). For cas and delete-cas,
// Entry.ModifyIndex holds the index to compare with (0: create only); for lock and
// unlock, Entry.Session names the session. Now is the leader's clock when it proposed
// the write (Unix nanoseconds), so lock-delay checks give the same answer on every
// server.
type KVSRequest struct {
	Op    KVSOp
	Entry state.KVEntry
	Now   int64
}

// SessionOp is the verb of a Session command.
type SessionOp string

// The session verbs.
const (
	SessionCreate  SessionOp = "create"
	SessionDestroy SessionOp = "destroy"
)

// SessionRequest creates a session, or destroys (invalidates) the session with
// Session.ID. Now, as in KVSRequest, starts the lock-delay of released keys.
type SessionRequest struct {
	Op      SessionOp
	Session state.Session
	Now     int64
}

// TxnRequest applies Ops all or nothing. Now is the leader's proposal time.
type TxnRequest struct {
	Ops []state.TxnOp
	Now int64
}

// TxnResponse is the state machine's answer to a TxnRequest: results when it applied,
// errors (and nothing applied) when an operation failed.
type TxnResponse struct {
	Results []state.TxnResult
	Errors  []state.TxnError
}

// DeregisterRequest removes a node (ServiceID and CheckID empty), a service instance
// with its checks, or one check.
type DeregisterRequest struct {
	Node      string
	ServiceID string
	CheckID   string
}

// TombstoneReapRequest forgets deletions at or below UpTo.
type TombstoneReapRequest struct {
	UpTo uint64
}

var (
	// ErrShort means the entry has no header.
	ErrShort = errors.New("command: entry too short")
	// ErrVersion means the entry was written in a format this binary does not read.
	ErrVersion = errors.New("command: unknown format version")
)

var handle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
	return h
}()

// The codec's encoders and decoders carry kilobytes of state each; every write to
// the store encodes a command on the leader and decodes it on each server, so they are
// reused rather than made per entry.
var (
	encoders = sync.Pool{New: func() any {
		e := &encoder{buf: make([]byte, 0, 512)}
		e.enc = codec.NewEncoderBytes(&e.buf, handle)
		return e
	}}
	decoders = sync.Pool{New: func() any { return codec.NewDecoderBytes(nil, handle) }}
)

// encoder is a pooled codec encoder with the buffer it encodes into, which it keeps.
type encoder struct {
	enc *codec.Encoder
	buf []byte
}

// Encode returns the log entry for a command.
func Encode(t Type, req any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.enc.ResetBytes(&e.buf) // the codec writes from the start of the buffer
	err := e.enc.Encode(req)
	var entry []byte
	if err == nil {
		entry = make([]byte, 2+len(e.buf))
		entry[0], entry[1] = Version, byte(t)
		copy(entry[2:], e.buf)
	}
	if cap(e.buf) <= 64<<10 { // a large one-off command's buffer is not kept
		encoders.Put(e)
	}
	if err != nil {
		return nil, fmt.Errorf("command: encode %s: %w", t, err)
	}
	return entry, nil
}

// Split returns an entry's type and body.
func Split(entry []byte) (Type, []byte, error) {
	if len(entry) < 2 {
		return 0, nil, ErrShort
	}
	if entry[0] != Version {
		return 0, nil, fmt.Errorf("%w %d", ErrVersion, entry[0])
	}
	return Type(entry[1]), entry[2:], nil
}

// DecodeBody decodes a body returned by Split into req.
func DecodeBody(body []byte, req any) error {
	dec := decoders.Get().(*codec.Decoder)
	dec.ResetBytes(body)
	err := dec.Decode(req)
	dec.ResetBytes(nil)
	decoders.Put(dec)
	if err != nil {
		return fmt.Errorf("command: decode: %w", err)
	}
	return nil
}

// NewEncoder and NewDecoder give snapshot code the same msgpack settings.
func NewEncoder(w interface{ Write([]byte) (int, error) }) *codec.Encoder {
	return codec.NewEncoder(w, handle)
}

// NewDecoder reads msgpack written by NewEncoder.
func NewDecoder(r interface{ Read([]byte) (int, error) }) *codec.Decoder {
	return codec.NewDecoder(r, handle)
}

package eventlog

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Wire format: Consul's. The gossip user event is named "consul:event:" + the event's
// name and carries the msgpack encoding of UserEvent (the codec tags), so wolke and
// Consul agents in one gossip pool would understand each other's events, and user
// events of other subsystems (without the prefix) are left alone.
const SerfPrefix = "consul:event:"

// MaxWireBytes is the gossip layer's limit on one user event message (serf's default
// UserEventSizeLimit): serf checks the event's name plus payload, and then the whole
// encoded message, against it.
const MaxWireBytes = 512

// serfOverhead bounds what serf's own encoding adds around our name and payload: one
// type byte and a msgpack map {LTime, Name, Payload, CC} (map header 1, keys 6+5+8+3,
// LTime at most 9, string and binary headers at most 3 each, CC 1) = 40 bytes. Using
// the bound makes our check conservative by at most a few bytes, and guarantees serf
// never refuses what we accepted.
const serfOverhead = 40

var msgpackHandle = &codec.MsgpackHandle{
	BasicHandle: codec.BasicHandle{DecodeOptions: codec.DecodeOptions{RawToString: true}},
	WriteExt:    true,
}

// Encode validates ev and returns the gossip user event's name and payload. The error
// wraps ErrInvalid, or ErrTooLarge when the message would exceed MaxWireBytes.
func Encode(ev UserEvent) (serfName string, payload []byte, err error) {
	if err := ev.Validate(); err != nil {
		return "", nil, err
	}
	serfName = SerfPrefix + ev.Name
	payload, err = marshal(&ev)
	if err != nil {
		return "", nil, err
	}
	if n := WireSize(serfName, payload); n > MaxWireBytes {
		return "", nil, fmt.Errorf("%w: event %q needs %d bytes in its gossip message, more than the %d-byte limit "+
			"(name, filters and payload together; at most %d bytes of payload fit with this name and these filters)",
			ErrTooLarge, ev.Name, n, MaxWireBytes, MaxPayload(ev))
	}
	return serfName, payload, nil
}

// WireSize is the size an event with this gossip name and payload is accounted for
// against MaxWireBytes.
func WireSize(serfName string, payload []byte) int {
	return len(serfName) + len(payload) + serfOverhead
}

// MaxPayload is the largest payload (in bytes) that ev's name and filters leave room
// for; 0 when even an empty payload does not fit.
func MaxPayload(ev UserEvent) int {
	serfName := SerfPrefix + ev.Name
	size := func(n int) int {
		ev.Payload = make([]byte, n)
		if n == 0 {
			ev.Payload = nil
		}
		b, err := marshal(&ev)
		if err != nil {
			return MaxWireBytes + 1
		}
		return WireSize(serfName, b)
	}
	if size(0) > MaxWireBytes {
		return 0
	}
	// Size grows by one per payload byte plus a header that changes at a few lengths;
	// start from the estimate and step down.
	n := MaxWireBytes - size(0)
	for n > 0 && size(n) > MaxWireBytes {
		n--
	}
	return n
}

// Decode turns a gossip user event back into a UserEvent, with the Lamport time it
// arrived with. It returns ErrNotEvent for user events that are not ours, and an error
// wrapping ErrMalformed for ones that cannot be used (undecodable, name mismatch, an ID
// that is not a UUID).
func Decode(serfName string, payload []byte, ltime uint64) (UserEvent, error) {
	name, ok := cutPrefix(serfName)
	if !ok {
		return UserEvent{}, ErrNotEvent
	}
	var ev UserEvent
	if err := codec.NewDecoderBytes(payload, msgpackHandle).Decode(&ev); err != nil {
		return UserEvent{}, fmt.Errorf("%w: %q: %v", ErrMalformed, name, err)
	}
	switch {
	case ev.Name != name:
		return UserEvent{}, fmt.Errorf("%w: gossip name %q carries event %q", ErrMalformed, name, ev.Name)
	case !isUUID(ev.ID):
		return UserEvent{}, fmt.Errorf("%w: %q: ID %q is not a UUID", ErrMalformed, name, ev.ID)
	}
	if len(ev.Payload) == 0 {
		ev.Payload = nil
	}
	ev.LTime = ltime
	return ev, nil
}

func cutPrefix(serfName string) (string, bool) {
	if len(serfName) <= len(SerfPrefix) || serfName[:len(SerfPrefix)] != SerfPrefix {
		return "", false
	}
	return serfName[len(SerfPrefix):], true
}

func marshal(ev *UserEvent) ([]byte, error) {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(ev); err != nil {
		return nil, fmt.Errorf("eventlog: encode event: %w", err)
	}
	return buf.Bytes(), nil
}

package eventlog

import (
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
)

// Version is the user-event protocol version this package writes and understands
// (Consul's userEventMaxVersion). Newer versions are accepted as they are.
const Version = 1

// Errors. ErrInvalid and ErrTooLarge are what a client can get wrong; the HTTP API maps
// them to 400 and 413.
var (
	// ErrInvalid means an event's name or filters are unusable; the error wrapping it
	// says which.
	ErrInvalid = errors.New("eventlog: invalid event")
	// ErrTooLarge means the encoded event does not fit into one gossip message.
	ErrTooLarge = errors.New("eventlog: event too large")
	// ErrNotEvent means a gossip user event is not a Consul-style user event (another
	// subsystem's, or one without the "consul:event:" name prefix).
	ErrNotEvent = errors.New("eventlog: not a user event")
	// ErrMalformed means a gossip user event has the prefix but cannot be decoded.
	ErrMalformed = errors.New("eventlog: malformed user event")
)

// UserEvent is one user event, in Consul's shape: the JSON of /v1/event/fire and
// /v1/event/list (Payload base64, null when empty), and, through the codec tags,
// Consul's msgpack encoding inside the gossip message.
type UserEvent struct {
	// ID is a random UUID given by the agent that fired the event.
	ID string `codec:"ID"`
	// Name is the event's name; names starting with "_" are reserved by Consul.
	Name string `codec:"n"`
	// Payload is opaque to the agents.
	Payload []byte `codec:"p,omitempty"`
	// NodeFilter, ServiceFilter and TagFilter are regular expressions (Go's RE2
	// syntax) restricting which agents keep the event; empty matches every agent.
	// TagFilter needs ServiceFilter.
	NodeFilter    string `codec:"nf,omitempty"`
	ServiceFilter string `codec:"sf,omitempty"`
	TagFilter     string `codec:"tf,omitempty"`
	// Version is the protocol version (1).
	Version int `codec:"v"`
	// LTime is the gossip Lamport time the event arrived with; 0 in the answer to a
	// fire (Consul's behaviour: it is assigned on the way out).
	LTime uint64 `codec:"-"`
}

// Validate checks what a client controls: a name, filters that compile, and no tag
// filter without a service filter (Consul's rules). Errors wrap ErrInvalid.
func (e *UserEvent) Validate() error {
	if e.Name == "" {
		return fmt.Errorf("%w: Missing name", ErrInvalid)
	}
	if e.TagFilter != "" && e.ServiceFilter == "" {
		return fmt.Errorf("%w: Cannot provide tag filter without service filter", ErrInvalid)
	}
	for _, f := range []struct{ what, re string }{
		{"node", e.NodeFilter}, {"service", e.ServiceFilter}, {"tag", e.TagFilter},
	} {
		if f.re == "" {
			continue
		}
		if _, err := regexp.Compile(f.re); err != nil {
			return fmt.Errorf("%w: Invalid %s filter: %v", ErrInvalid, f.what, err)
		}
	}
	return nil
}

// IDToIndex turns an event ID into the blocking-query index of a list whose newest
// event it is, exactly as Consul does (and as consul/api's Event().IDToIndex expects):
// the UUID's two 64-bit halves XORed. An ID that is not a UUID (never produced by
// wolke or Consul) is hashed instead. The result is at least 1.
func IDToIndex(id string) uint64 {
	var idx uint64
	if isUUID(id) {
		lo, _ := strconv.ParseUint(id[0:8]+id[9:13]+id[14:18], 16, 64)
		hi, _ := strconv.ParseUint(id[19:23]+id[24:36], 16, 64)
		idx = lo ^ hi
	} else {
		h := fnv.New64a()
		h.Write([]byte(id))
		idx = h.Sum64()
	}
	return max(idx, 1)
}

// isUUID reports whether s has the 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

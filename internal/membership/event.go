package membership

import (
	"strconv"

	"github.com/hashicorp/serf/serf"
)

// EventType says what an Event reports. The values are stable: only append.
type EventType int

const (
	EventMemberJoin   EventType = iota + 1 // a member became alive (also this node, once, at start)
	EventMemberLeave                       // a member left gracefully (or was force-left)
	EventMemberFailed                      // gossip declared a member dead
	EventMemberUpdate                      // a member changed its tags
	EventMemberReap                        // a failed or left member was forgotten
	EventUser                              // a user event (Pool.UserEvent on any member)
)

// String names the type the way serf and Consul do.
func (t EventType) String() string {
	switch t {
	case EventMemberJoin:
		return "member-join"
	case EventMemberLeave:
		return "member-leave"
	case EventMemberFailed:
		return "member-failed"
	case EventMemberUpdate:
		return "member-update"
	case EventMemberReap:
		return "member-reap"
	case EventUser:
		return "user"
	default:
		return "unknown(" + strconv.Itoa(int(t)) + ")"
	}
}

// Event is one membership change or user event. See the package documentation for
// why consumers reconcile from Members() instead of trusting every event.
type Event struct {
	Type EventType
	// Member is the member concerned, as of the event (member events only).
	Member Member
	// User is the user event (EventUser only).
	User UserEvent
}

// UserEvent is a named payload broadcast to every member, ordered by a Lamport clock.
type UserEvent struct {
	Name     string
	Payload  []byte
	LTime    uint64 // Lamport time of the event
	Coalesce bool   // the sender allowed coalescing with later events of the same name
}

// fromSerfEvent flattens a serf event into zero or more Events (a coalesced serf member
// event names several members; queries are not ours and give none).
func fromSerfEvent(e serf.Event) []Event {
	switch e := e.(type) {
	case serf.MemberEvent:
		var t EventType
		switch e.Type {
		case serf.EventMemberJoin:
			t = EventMemberJoin
		case serf.EventMemberLeave:
			t = EventMemberLeave
		case serf.EventMemberFailed:
			t = EventMemberFailed
		case serf.EventMemberUpdate:
			t = EventMemberUpdate
		case serf.EventMemberReap:
			t = EventMemberReap
		default:
			return nil
		}
		out := make([]Event, 0, len(e.Members))
		for _, m := range e.Members {
			out = append(out, Event{Type: t, Member: fromSerf(m)})
		}
		return out
	case serf.UserEvent:
		return []Event{{Type: EventUser, User: UserEvent{
			Name:     e.Name,
			Payload:  append([]byte(nil), e.Payload...),
			LTime:    uint64(e.LTime),
			Coalesce: e.Coalesce,
		}}}
	default:
		return nil
	}
}

package eventlog

import (
	"fmt"
	"slices"
	"testing"
)

func newLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// uuid returns a distinct valid event ID for i.
func uuid(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", i) }

func ids(evs []UserEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{DefaultConfig("n1"), true},
		{DefaultConfig(""), false},
		{Config{NodeName: "n", Capacity: -1, SeenIDs: 4}, false},
		{Config{NodeName: "n", Capacity: 8, SeenIDs: 4}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v", tc.cfg, err)
		}
	}
	if _, err := New(Config{NodeName: "n"}); err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
}

func TestLogRingAndNames(t *testing.T) {
	l := newLog(t, Config{NodeName: "n1", Capacity: 3})
	if evs, idx, _ := l.List(""); len(evs) != 0 || idx != 1 || l.Index() != 1 {
		t.Fatalf("empty log: %v, index %d", evs, idx)
	}
	names := []string{"a", "b", "a", "a", "b"}
	for i, n := range names {
		if v := l.Add(UserEvent{ID: uuid(i), Name: n}); v != Stored {
			t.Fatalf("Add %d: %v", i, v)
		}
	}
	// Capacity 3: events 2, 3, 4 remain, oldest first.
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"", []string{uuid(2), uuid(3), uuid(4)}},
		{"a", []string{uuid(2), uuid(3)}},
		{"b", []string{uuid(4)}},
		{"c", []string{}},
	} {
		evs, idx, _ := l.List(tc.name)
		if got := ids(evs); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.name, got, tc.want)
		}
		wantIdx := uint64(1)
		if len(tc.want) > 0 {
			wantIdx = IDToIndex(tc.want[len(tc.want)-1])
		}
		if idx != wantIdx {
			t.Errorf("List(%q) index = %d, want %d", tc.name, idx, wantIdx)
		}
	}
	if l.Index() != IDToIndex(uuid(4)) || l.Len() != 3 {
		t.Fatalf("Index %d, Len %d", l.Index(), l.Len())
	}
}

func TestLogDeduplicates(t *testing.T) {
	l := newLog(t, Config{NodeName: "n1", Capacity: 2, SeenIDs: 4})
	for i := range 4 {
		l.Add(UserEvent{ID: uuid(i), Name: "e"})
	}
	// Event 0 has left the ring but is still remembered as seen.
	if v := l.Add(UserEvent{ID: uuid(0), Name: "e"}); v != Duplicate {
		t.Fatalf("redelivered evicted event: %v", v)
	}
	if v := l.Add(UserEvent{ID: uuid(3), Name: "e"}); v != Duplicate {
		t.Fatalf("redelivered current event: %v", v)
	}
	if evs, _, _ := l.List(""); !slices.Equal(ids(evs), []string{uuid(2), uuid(3)}) {
		t.Fatalf("List = %v", ids(evs))
	}
	// The seen set is bounded: after 4 more IDs, event 0 is forgotten.
	for i := 4; i < 8; i++ {
		l.Add(UserEvent{ID: uuid(i), Name: "e"})
	}
	if v := l.Add(UserEvent{ID: uuid(0), Name: "e"}); v != Stored {
		t.Fatalf("long-forgotten ID: %v", v)
	}
	if st := l.Stats(); st != (Stats{Stored: 9, Duplicates: 2}) {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestLogFilters(t *testing.T) {
	svcs := map[string][]string{}
	l := newLog(t, Config{NodeName: "s2", Services: func() map[string][]string { return svcs }})
	for _, tc := range []struct {
		ev   UserEvent
		want Verdict
	}{
		{UserEvent{ID: uuid(1), Name: "e", NodeFilter: "^s2$"}, Stored},
		{UserEvent{ID: uuid(2), Name: "e", NodeFilter: "^s1$"}, Filtered},
		{UserEvent{ID: uuid(3), Name: "e", ServiceFilter: "api"}, Filtered},
	} {
		if v := l.Add(tc.ev); v != tc.want {
			t.Errorf("Add(%+v) = %v, want %v", tc.ev, v, tc.want)
		}
	}
	// A filtered event is not remembered: if the agent's services change, a later
	// delivery is judged again.
	svcs["api"] = nil
	if v := l.Add(UserEvent{ID: uuid(3), Name: "e", ServiceFilter: "api"}); v != Stored {
		t.Fatalf("after registering the service: %v", v)
	}
	if st := l.Stats(); st != (Stats{Stored: 2, Filtered: 2}) {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestLogChangedChannel(t *testing.T) {
	l := newLog(t, Config{NodeName: "n1"})
	_, idx0, ch := l.List("a")
	select {
	case <-ch:
		t.Fatal("changed closed before any event")
	default:
	}
	// Any stored event wakes waiters, even one of another name (the waiter lists
	// again and finds its index unchanged).
	l.Add(UserEvent{ID: uuid(1), Name: "b"})
	select {
	case <-ch:
	default:
		t.Fatal("changed not closed by a stored event")
	}
	_, idx1, ch1 := l.List("a")
	if idx1 != idx0 {
		t.Fatalf("index of %q changed from %d to %d by another name", "a", idx0, idx1)
	}
	// Duplicates and filtered events do not wake anyone.
	l.Add(UserEvent{ID: uuid(1), Name: "b"})
	l.Add(UserEvent{ID: uuid(2), Name: "a", NodeFilter: "^other$"})
	select {
	case <-ch1:
		t.Fatal("changed closed by a duplicate or filtered event")
	default:
	}
	l.Add(UserEvent{ID: uuid(3), Name: "a"})
	<-ch1
	if _, idx2, _ := l.List("a"); idx2 != IDToIndex(uuid(3)) {
		t.Fatalf("index after a new event = %d", idx2)
	}
}

func TestLogConcurrent(t *testing.T) {
	l := newLog(t, Config{NodeName: "n1", Capacity: 16})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			l.Add(UserEvent{ID: uuid(i % 300), Name: fmt.Sprint(i % 3)})
		}
	}()
	for {
		select {
		case <-done:
			if l.Len() != 16 {
				t.Fatalf("Len = %d", l.Len())
			}
			return
		default:
			evs, _, _ := l.List("1")
			for _, e := range evs {
				if e.Name != "1" {
					t.Fatalf("List(1) returned %q", e.Name)
				}
			}
		}
	}
}

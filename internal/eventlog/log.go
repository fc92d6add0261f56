package eventlog

import (
	"errors"
	"sync"
)

// Config configures a Log.
type Config struct {
	// NodeName is this agent's node name, matched against events' NodeFilter. Required.
	NodeName string
	// Capacity is how many events the log keeps; older ones are forgotten first.
	// Default 256, Consul's fixed size. Every agent keeps its own copy, so memory is
	// Capacity times at most MaxWireBytes.
	Capacity int
	// SeenIDs is how many recent event IDs are remembered to drop gossip's repeated
	// deliveries, including those of events already pushed out of the log. Default
	// 4*Capacity; it cannot be below Capacity.
	SeenIDs int
	// Services, when set, makes ServiceFilter and TagFilter apply (see Accepts). Nil,
	// the default until agents register services, delivers events with those filters
	// to every agent the node filter allows.
	Services Services
}

// DefaultConfig returns Consul's sizes for the node name given.
func DefaultConfig(node string) Config {
	return Config{NodeName: node, Capacity: 256, SeenIDs: 1024}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("eventlog: NodeName is required")
	case c.Capacity <= 0:
		return errors.New("eventlog: Capacity must be positive")
	case c.SeenIDs < c.Capacity:
		return errors.New("eventlog: SeenIDs must be at least Capacity")
	}
	return nil
}

// Verdict says what Add did with an event.
type Verdict int

const (
	// Stored: the event is new and passed the filters.
	Stored Verdict = iota + 1
	// Duplicate: an event with this ID was seen before (gossip redelivers).
	Duplicate
	// Filtered: the event's filters exclude this agent.
	Filtered
)

func (v Verdict) String() string {
	switch v {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Filtered:
		return "filtered"
	}
	return "unknown"
}

// Stats are a Log's counters since it was created.
type Stats struct {
	Stored, Duplicates, Filtered uint64
}

// Log is one agent's ring buffer of recent user events. It is safe for concurrent use:
// one goroutine adds what gossip delivers while request goroutines list and block.
type Log struct {
	cfg Config

	mu      sync.Mutex
	ring    []UserEvent // ring[(head+i)%cap] is the i-th oldest of n
	head, n int
	seen    map[string]struct{}
	seenQ   []string // the IDs in seen; once full, seenQ[seenPos] is the oldest
	seenPos int
	changed chan struct{} // closed and replaced on every stored event
	stats   Stats
}

// New returns an empty log. It copies cfg after filling unset sizes with defaults.
func New(cfg Config) (*Log, error) {
	def := DefaultConfig(cfg.NodeName)
	if cfg.Capacity == 0 {
		cfg.Capacity = def.Capacity
	}
	if cfg.SeenIDs == 0 {
		cfg.SeenIDs = max(def.SeenIDs, 4*cfg.Capacity)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Log{
		cfg:     cfg,
		ring:    make([]UserEvent, cfg.Capacity),
		seen:    make(map[string]struct{}, cfg.SeenIDs),
		seenQ:   make([]string, 0, cfg.SeenIDs),
		changed: make(chan struct{}),
	}, nil
}

// Add stores ev unless its ID was seen before or its filters exclude this agent, and
// wakes every List waiter when it stores.
func (l *Log) Add(ev UserEvent) Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.seen[ev.ID]; dup {
		l.stats.Duplicates++
		return Duplicate
	}
	if !Accepts(&ev, l.cfg.NodeName, l.cfg.Services) {
		l.stats.Filtered++
		return Filtered
	}
	l.remember(ev.ID)
	c := len(l.ring)
	if l.n < c {
		l.ring[(l.head+l.n)%c] = ev
		l.n++
	} else {
		l.ring[l.head] = ev
		l.head = (l.head + 1) % c
	}
	l.stats.Stored++
	close(l.changed)
	l.changed = make(chan struct{})
	return Stored
}

// remember adds id to the bounded set of seen IDs, forgetting the oldest when full.
func (l *Log) remember(id string) {
	if len(l.seenQ) < cap(l.seenQ) {
		l.seenQ = append(l.seenQ, id)
	} else {
		delete(l.seen, l.seenQ[l.seenPos])
		l.seenQ[l.seenPos] = id
		l.seenPos = (l.seenPos + 1) % len(l.seenQ)
	}
	l.seen[id] = struct{}{}
}

// List returns the events named name (all events when name is ""), oldest first; the
// index of that result (IDToIndex of its newest event, 1 when there is none); and a
// channel that is closed when the next event is stored. The events share their
// Payload with the log: read, never modify them. A blocking query lists, and
// while the index equals the client's, waits on the channel and lists again.
func (l *Log) List(name string) (events []UserEvent, index uint64, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	events = make([]UserEvent, 0, l.n)
	c := len(l.ring)
	for i := 0; i < l.n; i++ {
		ev := l.ring[(l.head+i)%c]
		if name == "" || ev.Name == name {
			events = append(events, ev)
		}
	}
	index = 1
	if len(events) > 0 {
		index = IDToIndex(events[len(events)-1].ID)
	}
	return events, index, l.changed
}

// Index is the index of the unfiltered list (List("")).
func (l *Log) Index() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return 1
	}
	return IDToIndex(l.ring[(l.head+l.n-1)%len(l.ring)].ID)
}

// Len is how many events the log holds.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

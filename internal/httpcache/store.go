package httpcache

import (
	"slices"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// maxVariants bounds the responses kept for one URI that varies; past it the
// oldest variant goes, so that a Vary on a high-cardinality field cannot make a
// lookup scan long lists.
const maxVariants = 32

// group holds what is stored for one primary key: the variants of its response
// (one when it has no Vary), or a pass marker.
type group struct {
	vary    []string
	entries []*entry
	marker  *entry
}

// lookupResult says what a lookup found besides an entry.
type lookupResult uint8

const (
	uriMiss  lookupResult = iota // nothing stored for the URI
	varyMiss                     // responses for the URI, none for this request's Vary'd fields
	passMiss                     // a pass marker: the last response was not storable
	found
)

// store is the byte-bounded LRU of entries. Its methods take mu themselves.
type store struct {
	mu       sync.Mutex
	groups   map[string]*group
	root     entry // sentinel of the LRU ring: root.next is the most recently used
	bytes    int64
	maxBytes int64
	objects  int64

	stores, evictions uint64
}

func newStore(maxBytes int64) *store {
	s := &store{groups: make(map[string]*group), maxBytes: maxBytes}
	s.root.next, s.root.prev = &s.root, &s.root
	return s
}

// lookup finds the entry for key that matches req's values of the Vary'd fields,
// and marks it used. On a vary-miss it also returns the request's secondary key.
func (s *store) lookup(key []byte, req *fasthttp.RequestHeader) (*entry, lookupResult, string) {
	var buf [128]byte
	s.mu.Lock()
	g := s.groups[string(key)]
	if g == nil {
		s.mu.Unlock()
		return nil, uriMiss, ""
	}
	if len(g.entries) == 0 {
		s.mu.Unlock()
		return nil, passMiss, ""
	}
	e := g.entries[0]
	if len(g.vary) > 0 {
		vkey := appendVaryKey(buf[:0], g.vary, req)
		e = nil
		for _, v := range g.entries {
			if v.vkey == string(vkey) {
				e = v
				break
			}
		}
		if e == nil {
			s.mu.Unlock()
			return nil, varyMiss, string(vkey)
		}
	}
	s.moveToFront(e)
	s.mu.Unlock()
	return e, found, ""
}

// insert stores e, replacing the variant it matches, and evicts as needed. An
// object larger than the whole cache is not stored.
func (s *store) insert(e *entry) bool {
	if e.size > s.maxBytes {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[e.key]
	if g == nil {
		g = &group{}
		s.groups[e.key] = g
	}
	if g.marker != nil {
		s.unlinkLocked(g.marker)
		g.marker = nil
	}
	if !slices.Equal(g.vary, e.vary) {
		// The response now varies differently: what is stored was selected by
		// other fields and cannot be matched any more.
		for _, old := range g.entries {
			s.unlinkLocked(old)
			s.objects--
		}
		g.entries = g.entries[:0]
		g.vary = e.vary
	}
	for i, old := range g.entries {
		if old.vkey == e.vkey {
			s.unlinkLocked(old)
			s.objects--
			g.entries = slices.Delete(g.entries, i, i+1)
			break
		}
	}
	if len(g.entries) >= maxVariants {
		s.unlinkLocked(g.entries[0])
		s.objects--
		g.entries = slices.Delete(g.entries, 0, 1)
	}
	g.entries = append(g.entries, e)
	s.pushFront(e)
	s.objects++
	s.stores++
	s.evictLocked(e)
	return true
}

// mark stores a pass marker for key unless responses are stored there.
func (s *store) mark(key string) {
	m := &entry{key: key, marker: true, size: int64(len(key)) + entryOverhead}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[key]
	if g == nil {
		g = &group{}
		s.groups[key] = g
	}
	if len(g.entries) > 0 || g.marker != nil {
		return
	}
	g.marker = m
	s.pushFront(m)
	s.evictLocked(m)
}

// remove drops e if it is still stored.
func (s *store) remove(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[e.key]
	if g == nil {
		return
	}
	if i := slices.Index(g.entries, e); i >= 0 {
		s.removeLocked(g, e)
	}
}

// removeKey drops everything stored for key and returns how many responses that was.
func (s *store) removeKey(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropGroupLocked(key)
}

// purge drops everything whose key starts with prefix.
func (s *store) purge(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for key := range s.groups {
		if strings.HasPrefix(key, prefix) {
			n += s.dropGroupLocked(key)
		}
	}
	return n
}

func (s *store) dropGroupLocked(key string) int {
	g := s.groups[key]
	if g == nil {
		return 0
	}
	n := len(g.entries)
	for _, e := range g.entries {
		s.unlinkLocked(e)
		s.objects--
	}
	if g.marker != nil {
		s.unlinkLocked(g.marker)
	}
	delete(s.groups, key)
	return n
}

// removeLocked unlinks e, a response or marker of g, and drops g when empty.
func (s *store) removeLocked(g *group, e *entry) {
	s.unlinkLocked(e)
	if e.marker {
		g.marker = nil
	} else if i := slices.Index(g.entries, e); i >= 0 {
		g.entries = slices.Delete(g.entries, i, i+1)
		s.objects--
	}
	if len(g.entries) == 0 && g.marker == nil {
		delete(s.groups, e.key)
	}
}

// evictLocked drops least recently used entries until the bound holds, sparing keep.
func (s *store) evictLocked(keep *entry) {
	for s.bytes > s.maxBytes {
		victim := s.root.prev
		if victim == keep {
			victim = victim.prev
		}
		if victim == &s.root {
			return
		}
		s.removeLocked(s.groups[victim.key], victim)
		if !victim.marker {
			s.evictions++
		}
	}
}

func (s *store) pushFront(e *entry) {
	e.prev, e.next = &s.root, s.root.next
	e.next.prev = e
	s.root.next = e
	s.bytes += e.size
}

func (s *store) unlinkLocked(e *entry) {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	s.bytes -= e.size
}

func (s *store) moveToFront(e *entry) {
	if s.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &s.root, s.root.next
	e.next.prev = e
	s.root.next = e
}

// appendVaryKey appends the secondary key of a request: for each Vary'd field,
// its values as the request has them, list elements trimmed of the optional
// whitespace around commas (RFC 9111 §4.1 allows such normalization). An absent
// field differs from an empty one.
func appendVaryKey(dst []byte, vary []string, req *fasthttp.RequestHeader) []byte {
	for _, name := range vary {
		vals := req.PeekAll(name)
		if len(vals) == 0 {
			dst = append(dst, 0, '\n')
			continue
		}
		dst = append(dst, 1)
		for i, v := range vals {
			if i > 0 {
				dst = append(dst, ',')
			}
			for j := 0; len(v) > 0; j++ {
				var item []byte
				item, v = cutComma(v)
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, trimOWS(item)...)
			}
		}
		dst = append(dst, '\n')
	}
	return dst
}

func cutComma(v []byte) (item, rest []byte) {
	for i, c := range v {
		if c == ',' {
			return v[:i], v[i+1:]
		}
	}
	return v, nil
}

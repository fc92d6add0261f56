package state

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-memdb"
)

// fieldIndex must produce exactly what memdb.StringFieldIndex produced, or lookups of
// existing data would miss.
func TestFieldIndexMatchesStringFieldIndex(t *testing.T) {
	typed := fieldIndex[KVEntry]{"Key", func(e *KVEntry) string { return e.Key }}
	reflected := &memdb.StringFieldIndex{Field: "Key"}
	for _, key := range []string{"", "a", "app/config", "ünïcode/ключ", "with\x00nul", "trailing/"} {
		ok1, b1, err1 := typed.FromObject(&KVEntry{Key: key})
		ok2, b2, err2 := reflected.FromObject(&KVEntry{Key: key})
		if ok1 != ok2 || !bytes.Equal(b1, b2) || (err1 == nil) != (err2 == nil) {
			t.Errorf("FromObject(%q) = %v %q %v; StringFieldIndex %v %q %v", key, ok1, b1, err1, ok2, b2, err2)
		}
		a1, err1 := typed.FromArgs(key)
		a2, err2 := reflected.FromArgs(key)
		if !bytes.Equal(a1, a2) || (err1 == nil) != (err2 == nil) {
			t.Errorf("FromArgs(%q) = %q %v; StringFieldIndex %q %v", key, a1, err1, a2, err2)
		}
		p1, err1 := typed.PrefixFromArgs(key)
		p2, err2 := reflected.PrefixFromArgs(key)
		if !bytes.Equal(p1, p2) || (err1 == nil) != (err2 == nil) {
			t.Errorf("PrefixFromArgs(%q) = %q %v; StringFieldIndex %q %v", key, p1, err1, p2, err2)
		}
	}
	for _, args := range [][]any{{}, {"a", "b"}, {42}} {
		if _, err := typed.FromArgs(args...); err == nil {
			t.Errorf("FromArgs(%v) accepted", args)
		}
	}
	if _, _, err := typed.FromObject(&Session{ID: "x"}); err == nil {
		t.Error("FromObject of another type accepted")
	}
}

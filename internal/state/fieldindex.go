package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// fieldIndex indexes a string field read through a typed accessor. It stores and looks
// up the same bytes as memdb.StringFieldIndex (the value and a NUL; an empty value is
// missing), so it replaces one without changing what any query finds, but it reads
// the field without reflection (StringFieldIndex looks it up by name on every call)
// and builds the key with one allocation instead of two. Every KV write goes through
// these indexes several times: the key's, the table index's, the tombstone lookup.
type fieldIndex[T any] struct {
	field string // the field's name, for errors
	get   func(*T) string
}

var (
	_ memdb.SingleIndexer = fieldIndex[KVEntry]{}
	_ memdb.PrefixIndexer = fieldIndex[KVEntry]{}
)

func (x fieldIndex[T]) FromObject(obj any) (bool, []byte, error) {
	o, ok := obj.(*T)
	if !ok {
		return false, nil, fmt.Errorf("index on %s: object is a %T, not a %T", x.field, obj, (*T)(nil))
	}
	v := x.get(o)
	if v == "" {
		return false, nil, nil
	}
	return true, nulTerminated(v), nil
}

func (x fieldIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index on %s: want one argument, got %d", x.field, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index on %s: argument must be a string: %#v", x.field, args[0])
	}
	return nulTerminated(s), nil
}

// PrefixFromArgs is FromArgs without the terminator, for the "<index>_prefix" lookups.
func (x fieldIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := x.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

func nulTerminated(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

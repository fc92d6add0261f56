package command

import (
	"errors"
	"reflect"
	"testing"

	"github.com/wolke-platform/wolke/internal/state"
)

func TestRoundTrip(t *testing.T) {
	req := KVSRequest{Op: KVCAS, Entry: state.KVEntry{Key: "a/b", Flags: 42, Value: []byte{0, 1, 2, 255}, ModifyIndex: 7}}
	buf, err := Encode(KVS, &req)
	if err != nil {
		t.Fatal(err)
	}
	typ, body, err := Split(buf)
	if err != nil || typ != KVS {
		t.Fatalf("split: %v %v", typ, err)
	}
	var got KVSRequest
	if err := DecodeBody(body, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("got %+v, want %+v", got, req)
	}
}

func TestSplitRejects(t *testing.T) {
	cases := []struct {
		entry []byte
		want  error
	}{
		{nil, ErrShort},
		{[]byte{Version}, ErrShort},
		{[]byte{Version + 1, byte(KVS), 0x80}, ErrVersion},
	}
	for _, tc := range cases {
		if _, _, err := Split(tc.entry); !errors.Is(err, tc.want) {
			t.Errorf("Split(%v) = %v, want %v", tc.entry, err, tc.want)
		}
	}
}

// BenchmarkKVS is the encoding work of every KV write: the leader encodes the
// command, and each server decodes it when it applies the entry.
func BenchmarkKVS(b *testing.B) {
	req := KVSRequest{Op: KVSet, Entry: state.KVEntry{Key: "wolke-bench/key-01234", Value: make([]byte, 256)}, Now: 1}
	entry, err := Encode(KVS, &req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(KVS, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		_, body, _ := Split(entry)
		for b.Loop() {
			var out KVSRequest
			if err := DecodeBody(body, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

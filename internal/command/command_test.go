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

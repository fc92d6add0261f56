package eventlog

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

const testID = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c"

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, ev := range []UserEvent{
		{ID: testID, Name: "deploy", Version: Version},
		{ID: testID, Name: "deploy", Payload: []byte{0, 1, 2, 0xff}, NodeFilter: "^web", ServiceFilter: "api",
			TagFilter: "v1", Version: Version},
	} {
		name, payload, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if name != "consul:event:deploy" {
			t.Fatalf("gossip name = %q", name)
		}
		got, err := Decode(name, payload, 42)
		if err != nil {
			t.Fatal(err)
		}
		ev.LTime = 42
		if got.ID != ev.ID || got.Name != ev.Name || !bytes.Equal(got.Payload, ev.Payload) || got.NodeFilter != ev.NodeFilter ||
			got.ServiceFilter != ev.ServiceFilter || got.TagFilter != ev.TagFilter || got.Version != ev.Version || got.LTime != 42 {
			t.Fatalf("round trip: got %+v, want %+v", got, ev)
		}
	}
}

// The encoding is Consul's: short msgpack keys, the ID under "ID", LTime not encoded.
func TestEncodingUsesConsulKeys(t *testing.T) {
	_, payload, err := Encode(UserEvent{ID: testID, Name: "n1", Payload: []byte("p"), NodeFilter: "nf", Version: 1, LTime: 7})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := codec.NewDecoderBytes(payload, msgpackHandle).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ID", "n", "p", "nf", "v"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %v", k, m)
		}
	}
	for _, k := range []string{"sf", "tf", "LTime", "Name"} {
		if _, ok := m[k]; ok {
			t.Errorf("unexpected key %q in %v", k, m)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := func(ev UserEvent) []byte {
		b, err := marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		serfName string
		payload  []byte
		want     error
	}{
		{"other subsystem", "wolke:reload", good(UserEvent{ID: testID, Name: "x"}), ErrNotEvent},
		{"prefix only", SerfPrefix, nil, ErrNotEvent},
		{"garbage", SerfPrefix + "x", []byte{0xc1, 0x00}, ErrMalformed},
		{"name mismatch", SerfPrefix + "x", good(UserEvent{ID: testID, Name: "y"}), ErrMalformed},
		{"ID not a UUID", SerfPrefix + "x", good(UserEvent{ID: "1", Name: "x"}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.serfName, tc.payload, 1); !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEncodeSizeLimit(t *testing.T) {
	for _, ev := range []UserEvent{
		{ID: testID, Name: "deploy", Version: Version},
		{ID: testID, Name: strings.Repeat("n", 100), NodeFilter: "^web-[0-9]+$", ServiceFilter: "api", TagFilter: "v2", Version: Version},
	} {
		max := MaxPayload(ev)
		if max < 100 || max > MaxWireBytes {
			t.Fatalf("MaxPayload = %d, implausible", max)
		}
		ev.Payload = bytes.Repeat([]byte("x"), max)
		name, payload, err := Encode(ev)
		if err != nil {
			t.Fatalf("payload of MaxPayload = %d bytes: %v", max, err)
		}
		if n := WireSize(name, payload); n > MaxWireBytes {
			t.Fatalf("accepted event needs %d bytes", n)
		}
		ev.Payload = append(ev.Payload, 'x')
		_, _, err = Encode(ev)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "512-byte limit") {
			t.Fatalf("payload of %d bytes: err = %v, want ErrTooLarge", max+1, err)
		}
	}
	// A name that alone does not fit leaves no room at all.
	ev := UserEvent{ID: testID, Name: strings.Repeat("n", MaxWireBytes), Version: Version}
	if MaxPayload(ev) != 0 {
		t.Fatalf("MaxPayload = %d for an oversized name", MaxPayload(ev))
	}
	if _, _, err := Encode(ev); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized name: %v", err)
	}
	// Validation comes first.
	if _, _, err := Encode(UserEvent{ID: testID}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing name: %v", err)
	}
}

// serfUserEvent mirrors serf's messageUserEvent, which serf encodes with a plain
// MsgpackHandle after one type byte; its encoding around our name and payload must
// stay within serfOverhead, or serf could refuse what Encode accepted.
type serfUserEvent struct {
	LTime   uint64
	Name    string
	Payload []byte
	CC      bool
}

func TestSerfOverheadBound(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, MaxWireBytes} {
		name, payload := strings.Repeat("n", n), bytes.Repeat([]byte("p"), n)
		var buf bytes.Buffer
		buf.WriteByte(0)
		msg := serfUserEvent{LTime: math.MaxUint64, Name: name, Payload: payload, CC: true}
		if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(&msg); err != nil {
			t.Fatal(err)
		}
		if over := buf.Len() - len(name) - len(payload); over > serfOverhead {
			t.Fatalf("sizes %d: serf adds %d bytes, serfOverhead is %d", n, over, serfOverhead)
		}
	}
}

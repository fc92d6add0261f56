package chassis

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestDynamicConfig(t *testing.T) {
	agent := startAgent(t)
	kv := consulClient(t, agent).KV()
	put := func(key, value string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A value stored before the start is what Setup sees.
	put("config/dyn/limit", "7")

	var limit *Value[int]
	var mode *Value[string]
	changes := make(chan int, 10)
	r := startInstance(t, agent, Service{
		Name: "dyn",
		Setup: func(ctx context.Context, in *Instance) (http.Handler, error) {
			limit = in.Dynamic().Int("limit", 10, Between(1, 100))
			if got := limit.Get(); got != 7 {
				t.Errorf("limit in Setup = %d, want the stored 7", got)
			}
			limit.OnChange(func(v int) { changes <- v })
			mode = in.Dynamic().String("mode", "fast", OneOf("fast", "safe"))
			return nil, nil
		},
	})

	// A change reaches the callback within a second.
	begin := time.Now()
	put("config/dyn/limit", "42")
	select {
	case v := <-changes:
		if v != 42 || limit.Get() != 42 {
			t.Fatalf("callback got %d, Get %d; want 42", v, limit.Get())
		}
		t.Logf("KV change to callback: %v", time.Since(begin))
		if time.Since(begin) > time.Second {
			t.Fatalf("change took %v to arrive", time.Since(begin))
		}
	case <-time.After(time.Second):
		t.Fatal("no callback within 1s of the KV change")
	}

	// Invalid values: a log line each, the previous value kept, no callback.
	rejected := func(value string) map[string]any {
		for _, rec := range r.logs.records(t) {
			if rec["msg"] == "dynamic config value rejected, keeping the previous one" && rec["value"] == value {
				return rec
			}
		}
		return nil
	}
	for _, bad := range []string{"500", "lots"} {
		put("config/dyn/limit", bad)
		waitFor(t, time.Second, "rejection of "+bad, func() bool { return rejected(bad) != nil })
		rec := rejected(bad)
		if rec["key"] != "config/dyn/limit" || rec["kept"] != "42" || !strings.Contains(rec["error"].(string), map[string]string{"500": "outside", "lots": "not an integer"}[bad]) {
			t.Fatalf("rejection log line: %v", rec)
		}
		if limit.Get() != 42 {
			t.Fatalf("limit = %d after the invalid %q, want 42 kept", limit.Get(), bad)
		}
	}
	if got := metricValue(t, r.reg, "chassis_dynamic_config_rejected_total", map[string]string{"key": "limit"}); got != 2 {
		t.Fatalf("rejections counted: %v", got)
	}
	put("config/dyn/mode", "reckless")
	waitFor(t, time.Second, "rejection of reckless", func() bool { return rejected("reckless") != nil })
	if mode.Get() != "fast" {
		t.Fatalf("mode = %q", mode.Get())
	}
	select {
	case v := <-changes:
		t.Fatalf("callback ran for a rejected value (%d)", v)
	default:
	}

	// A valid value after invalid ones, then a deletion back to the default.
	put("config/dyn/limit", " 43\n")
	if v := <-changes; v != 43 {
		t.Fatalf("callback got %d, want 43", v)
	}
	if _, err := kv.Delete("config/dyn/limit", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-changes:
		if v != 10 {
			t.Fatalf("after deletion: %d, want the default 10", v)
		}
	case <-time.After(time.Second):
		t.Fatal("no callback for the deletion")
	}
	// Unrelated keys and keys of other services do not call back.
	put("config/dyn/other", "1")
	put("config/dynamo/limit", "3")
	put("config/dyn/mode", "safe")
	waitFor(t, time.Second, "mode safe", func() bool { return mode.Get() == "safe" })
	select {
	case v := <-changes:
		t.Fatalf("unexpected callback %d", v)
	default:
	}
}

func TestDynamicTypesAndRedeclaration(t *testing.T) {
	in, logs := newInstance(t, Service{})
	d := in.Dynamic()
	b := d.Bool("on", false)
	f := d.Float("ratio", 0.5)
	dur := d.Duration("timeout", time.Second, Between(time.Millisecond, time.Minute))
	s1 := d.String("name", "a")
	if s2 := d.String("name", "b"); s2 != s1 {
		t.Fatal("redeclaring a key made a second value")
	}
	d.apply(api.KVPairs{
		{Key: "config/test/on", Value: []byte("true")},
		{Key: "config/test/ratio", Value: []byte("0.25")},
		{Key: "config/test/timeout", Value: []byte("2h")},
		{Key: "config/test/name", Value: []byte("n")},
		{Key: "config/test/dir/", Value: nil},
	}, 5)
	if !b.Get() || f.Get() != 0.25 || dur.Get() != time.Second || s1.Get() != "n" {
		t.Fatalf("values: %v %v %v %q", b.Get(), f.Get(), dur.Get(), s1.Get())
	}
	if logs.find(t, "dynamic config value rejected, keeping the previous one") == nil {
		t.Fatal("the out-of-range duration was not logged")
	}
	// A later declaration sees the loaded value at once.
	if got := d.Float("ratio", 1).Get(); got != 0.25 {
		t.Fatalf("ratio = %v", got)
	}
	if got := in.dyn.snapshot()["name"]; got != "n" {
		t.Fatalf("snapshot: %v", in.dyn.snapshot())
	}
}

package main

import (
	"reflect"
	"testing"
)

func TestNormalizeArgs(t *testing.T) {
	cases := []struct {
		in, want []string
	}{
		{[]string{"agent", "-dev", "-http-addr", "x"}, []string{"agent", "--dev", "--http-addr", "x"}},
		{[]string{"agent", "-http-addr=x"}, []string{"agent", "--http-addr=x"}},
		{[]string{"bench", "watch", "-n", "5"}, []string{"bench", "watch", "--n", "5"}},
		{[]string{"agent", "-nosuchflag"}, []string{"agent", "-nosuchflag"}},
		{[]string{"kv", "put", "k", "-"}, []string{"kv", "put", "k", "-"}},
		{[]string{"agent", "--", "-dev"}, []string{"agent", "--", "-dev"}},
	}
	for _, tc := range cases {
		if got := normalizeArgs(newRootCmd(), tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("normalizeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEnvFillsOnlyAllowedFlags(t *testing.T) {
	t.Setenv("WOLKE_RECURSE", "true")
	t.Setenv("WOLKE_HTTP_ADDR", "127.0.0.1:1")
	root := newRootCmd()
	cmd, _, err := root.Find([]string{"kv", "delete"})
	if err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd); err != nil {
		t.Fatal(err)
	}
	if f := cmd.Flags().Lookup("recurse"); f == nil || f.Value.String() != "false" {
		t.Fatalf("WOLKE_RECURSE reached kv delete: %v", f)
	}
	if f := cmd.Flags().Lookup("http-addr"); f == nil || f.Value.String() != "127.0.0.1:1" {
		t.Fatalf("WOLKE_HTTP_ADDR not applied: %v", f)
	}
	t.Setenv("WOLKE_DATA_DIR", "/tmp/x")
	agentCmd, _, _ := root.Find([]string{"agent"})
	if err := applyEnv(agentCmd); err != nil {
		t.Fatal(err)
	}
	if got := agentCmd.Flags().Lookup("data-dir").Value.String(); got != "/tmp/x" {
		t.Fatalf("agent flag from env: %q", got)
	}
}

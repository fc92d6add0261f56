package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProxyValidate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc string
		code      int
		want      string
	}{
		{"valid", `{"lb": "least-request", "timeout": "5s", "fault": {"abort_percent": 5}}`, 0, "valid"},
		{"unknown field", `{"lbb": "p2c"}`, 1, `unknown field "lbb"`},
		{"bad value", `{"attempts": 0}`, 1, "attempts must be 1..10"},
		{"bad duration", `{"timeout": "soon"}`, 1, "invalid duration"},
		{"bad fault", `{"fault": {"abort_percent": 150}}`, 1, "percentages"},
		{"not JSON", `lb = p2c`, 1, "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			os.WriteFile(f, []byte(tc.doc), 0o644)
			r := runCLI(t, "", "proxy", "validate", f)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.want)
			}
		})
	}
}

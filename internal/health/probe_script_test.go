package health

import (
	"strings"
	"testing"
	"time"
)

func TestScriptProbe(t *testing.T) {
	tests := []struct {
		name     string
		def      Definition
		status   string
		output   string // exact, or a substring when contains is set
		contains bool
	}{
		{"exit 0 passing", Definition{Script: "echo hello; exit 0"}, StatusPassing, "hello\n", false},
		{"exit 1 warning", Definition{Script: "echo warn >&2; exit 1"}, StatusWarning, "warn\n", false},
		{"exit 2 critical", Definition{Script: "echo bad; exit 2"}, StatusCritical, "bad\n", false},
		{"exit 255 critical", Definition{Script: "exit 255"}, StatusCritical, "", false},
		{"args are not shell-expanded", Definition{Args: []string{"/bin/echo", "$HOME", "a;b"}}, StatusPassing, "$HOME a;b\n", false},
		{"shell string expanded", Definition{Script: "echo $((1+2))"}, StatusPassing, "3\n", false},
		{"explicit shell", Definition{Script: "echo ok", Shell: "/bin/sh"}, StatusPassing, "ok\n", false},
		{"missing program", Definition{Args: []string{"/nonexistent/check"}}, StatusCritical, "no such file or directory", true},
		{"stdout and stderr together", Definition{Script: "echo out; echo err >&2"}, StatusPassing, "out\nerr\n", false},
		{"output keeps the tail", Definition{Script: "printf 'x%.0s' $(seq 100); printf END", OutputMaxSize: 16}, StatusPassing, "Captured 16 of 103 bytes\n...\nxxxxxxxxxxxxxEND", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newScriptProbe(tt.def)
			got := runProbe(t, p, 10*time.Second)
			if got.status != tt.status {
				t.Fatalf("status %s, want %s (output %q)", got.status, tt.status, got.output)
			}
			if tt.contains && !strings.Contains(got.output, tt.output) || !tt.contains && got.output != tt.output {
				t.Errorf("output %q, want %q", got.output, tt.output)
			}
		})
	}
}

func TestScriptProbeTimeoutKillsProcessGroup(t *testing.T) {
	// The background sleep keeps the output pipe open: unless the whole
	// process group is killed, the run would last until waitDelay.
	def := Definition{Script: "echo started; sleep 30 & sleep 30", Timeout: 100 * time.Millisecond}
	p := newScriptProbe(def)
	start := time.Now()
	got := runProbe(t, p, def.effectiveTimeout())
	if got.status != StatusCritical || got.output != "Timed out (100ms) running check\n\nstarted\n" {
		t.Errorf("got %+v", got)
	}
	if d := time.Since(start); d >= waitDelay {
		t.Errorf("timed-out script took %v: the process group was not killed", d)
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		max    int
		writes []string
		want   string
	}{
		{5, []string{"ab", "cd"}, "abcd"},
		{5, []string{"abc", "def"}, "Captured 5 of 6 bytes\n...\nbcdef"},
		{3, []string{"abcdefg"}, "Captured 3 of 7 bytes\n...\nefg"},
		{3, []string{"a", "b", "c", "d"}, "Captured 3 of 4 bytes\n...\nbcd"},
	}
	for _, tt := range tests {
		b := &tailBuffer{max: tt.max}
		for _, w := range tt.writes {
			b.Write([]byte(w))
		}
		if got := b.String(); got != tt.want {
			t.Errorf("%d %q: %q, want %q", tt.max, tt.writes, got, tt.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("abc", 3); got != "abc" {
		t.Errorf("%q", got)
	}
	if got := truncate("abcdef", 2); got != "ab ... (captured 2 of 6 bytes)" {
		t.Errorf("%q", got)
	}
}

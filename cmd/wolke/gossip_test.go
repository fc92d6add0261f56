package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// execGossip runs the root command in process, as run does, and returns stdout and the
// exit code run would give.
func execGossip(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(normalizeArgs(root, args))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code, err
}

func TestGossipSimulateRefusesBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"-nodes", "0"}, "-nodes 0"},
		{[]string{"-loss", "1.5"}, "-loss 1.5"},
		{[]string{"-fanout", "0"}, "-fanout 0"},
		{[]string{"-failed", "1"}, "-failed 1"},
		{[]string{"-interval", "0s"}, "-interval 0s"},
		{[]string{"-retransmit-mult", "0"}, "-retransmit-mult 0"},
		{[]string{"-runs", "0"}, "-runs 0"},
		{[]string{"-format", "xml"}, "-format"},
		{[]string{"-plot", "curves.gif"}, "-plot"},
		{[]string{"-measure", "-nodes", "1"}, "-measure"},
		{[]string{"-measure", "-trials", "0"}, "-trials 0"},
		{[]string{"-nodes", "many"}, "nodes"},
		{[]string{"stray"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, code, err := execGossip(t, append([]string{"gossip", "simulate"}, tt.args...)...)
			if code != 2 || err == nil {
				t.Fatalf("exit code %d (%v), want 2", code, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q: want one line naming %q", msg, tt.want)
			}
		})
	}
}

// TestGossipHelperProcess is not a test: it is the wolke process for
// TestGossipSimulateExitCode, which needs a real exit code and stderr.
func TestGossipHelperProcess(t *testing.T) {
	if os.Getenv("GOSSIPSIM_HELPER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(context.Background(), args))
}

func TestGossipSimulateExitCode(t *testing.T) {
	for _, args := range [][]string{
		{"gossip", "simulate", "-nodes", "0"},
		{"gossip", "simulate", "-loss", "1.5"},
		{"gossip", "simulate", "-fanout", "0"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestGossipHelperProcess$", "--"}, args...)...)
		cmd.Env = append(os.Environ(), "GOSSIPSIM_HELPER_PROCESS=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit code 2", args, err)
			continue
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "error: invalid -") {
			t.Errorf("%v: stderr %q, want one line 'error: invalid -...'", args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: printed %q on stdout", args, stdout.String())
		}
	}
}

func TestGossipSimulateText(t *testing.T) {
	out, code, err := execGossip(t, "gossip", "simulate", "-nodes", "1000", "-runs", "20")
	if code != 0 {
		t.Fatalf("exit code %d: %v", code, err)
	}
	for _, want := range []string{
		"1000 nodes (1000 live): interval 200ms, fanout 3",
		"at most 16 times",
		"50%", "90%", "99%", "99.99%", "100%",
		"model ", "simulation ", "42.0 kB/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Serf's figure: 99.99 % of 1,000 nodes after 11 rounds.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "model ") && !strings.Contains(line, "2.20s") {
			t.Errorf("model row %q lacks 2.20s", line)
		}
	}
}

type gossipOut struct {
	Params struct {
		Nodes           int     `json:"nodes"`
		Live            int     `json:"live"`
		IntervalSeconds float64 `json:"interval_seconds"`
		RetransmitLimit int     `json:"retransmit_limit"`
	} `json:"params"`
	Results []struct {
		Method string `json:"method"`
		Runs   int    `json:"runs"`
		Levels []struct {
			Share         float64  `json:"share"`
			MedianSeconds *float64 `json:"median_seconds"`
		} `json:"levels"`
		Bandwidth   float64 `json:"bandwidth_bytes_per_second"`
		MemoryBytes uint64  `json:"memory_bytes"`
		Curve       []struct {
			Seconds, Share float64
		} `json:"curve"`
	} `json:"results"`
}

func TestGossipSimulateJSONAndPlot(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		methods []string
		plot    string
	}{
		{"model and simulation", []string{"-nodes", "1000", "-runs", "20", "-plot", filepath.Join(dir, "a.png")},
			[]string{"model", "simulation"}, "a.png"},
		{"with measurement", []string{"-nodes", "10", "-runs", "20", "-measure", "-trials", "2", "-plot", filepath.Join(dir, "b.svg")},
			[]string{"model", "simulation", "measurement"}, "b.svg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && len(tt.methods) == 3 {
				t.Skip("starts memberlist instances")
			}
			out, code, err := execGossip(t, append([]string{"gossip", "simulate", "-format", "json"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit code %d: %v", code, err)
			}
			var g gossipOut
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if g.Params.IntervalSeconds != 0.2 || g.Params.Live != g.Params.Nodes {
				t.Errorf("params %+v", g.Params)
			}
			if len(g.Results) != len(tt.methods) {
				t.Fatalf("%d results, want %v", len(g.Results), tt.methods)
			}
			for i, r := range g.Results {
				if r.Method != tt.methods[i] || len(r.Levels) != 5 || len(r.Curve) < 2 || r.Bandwidth <= 0 {
					t.Errorf("result %d: %s, %d levels, %d curve points, %v B/s", i, r.Method, len(r.Levels), len(r.Curve), r.Bandwidth)
				}
				for _, l := range r.Levels {
					if l.MedianSeconds == nil || *l.MedianSeconds < 0 {
						t.Errorf("%s: level %v median %v", r.Method, l.Share, l.MedianSeconds)
					}
				}
				// The memory figure is a heap difference; in this test binary, agents of
				// earlier tests shutting down can make it 0 for a 10-node pool, so it is
				// checked where pools are measured alone (internal/gossipsim).
			}
			b, err := os.ReadFile(filepath.Join(dir, tt.plot))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(tt.plot, ".png") {
				if _, err := png.Decode(bytes.NewReader(b)); err != nil {
					t.Errorf("plot is not a PNG: %v", err)
				}
			} else if s := string(b); !strings.Contains(s, "<svg") || !strings.Contains(s, "measurement (mean of 2 trials)") {
				t.Errorf("plot is not an SVG with a measurement legend")
			}
		})
	}
}

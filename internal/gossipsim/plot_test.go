package gossipsim

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
)

func TestWritePlot(t *testing.T) {
	p := DefaultParams()
	m, err := Model(p)
	if err != nil {
		t.Fatal(err)
	}
	s := simulate(t, p, SimConfig{Runs: 20, Seed: 1})
	tests := []struct {
		format string
		check  func(t *testing.T, b []byte)
	}{
		{"png", func(t *testing.T, b []byte) {
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if w := img.Bounds().Dx(); w < 400 {
				t.Errorf("PNG %d pixels wide", w)
			}
		}},
		{"svg", func(t *testing.T, b []byte) {
			svg := string(b)
			for _, want := range []string{"<svg", "model (Serf, mean-field)", "simulation (mean of 20 runs)",
				"time since the broadcast (s)", "share of live nodes that have it"} {
				if !strings.Contains(svg, want) {
					t.Errorf("SVG lacks %q", want)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WritePlot(&buf, tt.format, m, s); err != nil {
				t.Fatalf("WritePlot: %v", err)
			}
			tt.check(t, buf.Bytes())
		})
	}
	if err := WritePlot(&bytes.Buffer{}, "gif", m); !errors.Is(err, ErrPlotFormat) {
		t.Errorf("gif: err = %v, want ErrPlotFormat", err)
	}
}

func TestPlotFormat(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"a.png", "png"}, {"dir/b.SVG", "svg"}, {"c.pdf", ""}, {"noext", ""},
	} {
		got, err := PlotFormat(tt.path)
		if got != tt.want || (tt.want == "") != errors.Is(err, ErrPlotFormat) {
			t.Errorf("PlotFormat(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}

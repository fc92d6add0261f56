package gossipsim

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// ErrPlotFormat reports a plot file type other than PNG or SVG.
var ErrPlotFormat = errors.New("gossipsim: plot format must be png or svg")

// PlotFormat returns the format for a plot file name, from its extension.
func PlotFormat(path string) (string, error) {
	switch f := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), ".")); f {
	case "png", "svg":
		return f, nil
	default:
		return "", fmt.Errorf("%w, not %q", ErrPlotFormat, filepath.Ext(path))
	}
}

// WritePlot draws the convergence curves of results, time on x and share of live
// nodes on y, with a legend, as format ("png" or "svg") to w.
func WritePlot(w io.Writer, format string, results ...Result) error {
	if format != "png" && format != "svg" {
		return fmt.Errorf("%w, not %q", ErrPlotFormat, format)
	}
	for _, r := range results {
		if len(r.Curve) == 0 {
			return fmt.Errorf("gossipsim: %s result has no curve to plot", r.Method)
		}
	}
	if len(results) == 0 {
		return errors.New("gossipsim: nothing to plot")
	}
	p := results[0].Params
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("gossip convergence: %d nodes, interval %v, fanout %d, loss %g %%, failed %g %%",
		p.Nodes, p.Interval, p.Fanout, p.Loss*100, p.Failed*100)
	pl.X.Label.Text = "time since the broadcast (s)"
	pl.Y.Label.Text = "share of live nodes that have it"
	pl.Y.Min, pl.Y.Max = 0, 1.02
	pl.Add(plotter.NewGrid())
	pl.Legend.Top = false
	pl.Legend.Left = false
	pl.Legend.XOffs = -vg.Millimeter * 2
	pl.Legend.YOffs = vg.Millimeter * 2

	end := 0.0
	for _, r := range results {
		if len(r.Curve) > 0 {
			end = max(end, r.Curve[len(r.Curve)-1].T.Seconds())
		}
	}
	for i, r := range results {
		xys := make(plotter.XYs, len(r.Curve), len(r.Curve)+1)
		for j, pt := range r.Curve {
			xys[j] = plotter.XY{X: pt.T.Seconds(), Y: pt.Share}
		}
		// A curve that settled early stays flat to the right edge, instead of
		// stopping and looking cut off.
		if last := xys[len(xys)-1]; last.X < end {
			xys = append(xys, plotter.XY{X: end, Y: last.Y})
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("gossipsim: plotting %s: %w", r.Method, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		line.Width = vg.Points(1.5)
		pl.Add(line)
		pl.Legend.Add(legendLabel(r), line)
	}
	wt, err := pl.WriterTo(8*vg.Inch, 4.5*vg.Inch, format)
	if err != nil {
		return fmt.Errorf("gossipsim: plotting: %w", err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("gossipsim: writing plot: %w", err)
	}
	return nil
}

func legendLabel(r Result) string {
	switch r.Method {
	case MethodModel:
		return "model (Serf, mean-field)"
	case MethodSimulation:
		return fmt.Sprintf("simulation (mean of %d runs)", r.Runs)
	case MethodMeasurement:
		return fmt.Sprintf("measurement (mean of %d trials)", r.Runs)
	}
	return string(r.Method)
}

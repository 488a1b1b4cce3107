package train

import (
	"fmt"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/specforge/specforge/internal/atomicfile"
)

// WritePlot draws the training curves into a PNG: the loss, the per-step accuracies, and the simulated
// acceptance length (train and eval).
func WritePlot(path string, history []Record) error {
	if len(history) == 0 {
		return nil
	}
	loss := plot.New()
	loss.Title.Text = "TTT loss"
	loss.X.Label.Text = "step"
	acc := plot.New()
	acc.Title.Text = "accuracy per unrolled step (train)"
	acc.X.Label.Text = "step"
	length := plot.New()
	length.Title.Text = "simulated acceptance length"
	length.X.Label.Text = "step"

	series := func(split string, value func(Record) float64) plotter.XYs {
		var xy plotter.XYs
		for _, r := range history {
			if r.Split == split {
				xy = append(xy, plotter.XY{X: float64(r.Step), Y: value(r)})
			}
		}
		return xy
	}
	var args []any
	for _, split := range []string{"train", "eval"} {
		if xy := series(split, func(r Record) float64 { return r.Loss }); len(xy) > 0 {
			args = append(args, split, xy)
		}
	}
	if err := plotutil.AddLines(loss, args...); err != nil {
		return err
	}
	args = args[:0]
	K := len(history[0].Acc)
	for k := 0; k < K; k++ {
		kk := k
		args = append(args, fmt.Sprintf("acc_%d", k), series("train", func(r Record) float64 { return r.Acc[kk] }))
	}
	if err := plotutil.AddLines(acc, args...); err != nil {
		return err
	}
	args = args[:0]
	for _, split := range []string{"train", "eval"} {
		if xy := series(split, func(r Record) float64 { return r.SimAccLen }); len(xy) > 0 {
			args = append(args, split+" (simulated)", xy)
		}
	}
	if xy := series("eval", func(r Record) float64 { return r.AcceptanceLength }); len(xy) > 0 && xy[len(xy)-1].Y > 0 {
		args = append(args, "eval (measured, incl. bonus token)", xy)
	}
	if err := plotutil.AddLines(length, args...); err != nil {
		return err
	}
	img := vgimg.New(24*vg.Centimeter, 30*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadY: vg.Centimeter / 2, PadTop: vg.Centimeter / 4, PadBottom: vg.Centimeter / 4}
	plots := [][]*plot.Plot{{loss}, {acc}, {length}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	return savePNG(path, img)
}

func savePNG(path string, img *vgimg.Canvas) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
		return err
	})
}

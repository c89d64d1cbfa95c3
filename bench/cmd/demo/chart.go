package main

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// palette gives each strategy a colour, in the order of strategies.
var palette = map[string]color.Color{
	"plain":         color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
	"naive":         color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"retryablehttp": color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"failsafe":      color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	"rebound":       color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
}

// bands shade the phases and name them; it draws behind the lines.
type bands struct {
	sched schedule
	names bool
}

var bandShade = map[kind]color.Color{
	healthy:   color.RGBA{R: 0xe8, G: 0xf5, B: 0xe9, A: 0xff},
	outage:    color.RGBA{R: 0xfd, G: 0xe0, B: 0xe0, A: 0xff},
	rateLimit: color.RGBA{R: 0xff, G: 0xf3, B: 0xd6, A: 0xff},
	flaky:     color.RGBA{R: 0xfc, G: 0xe9, B: 0xd9, A: 0xff},
	resets:    color.RGBA{R: 0xec, G: 0xe4, B: 0xf5, A: 0xff},
}

// Plot implements plot.Plotter.
func (b bands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	sty := p.X.Tick.Label
	sty.Font.Size = vg.Points(8)
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YTop
	for i, ph := range b.sched {
		x0 := trX(b.sched.start(i).Seconds())
		x1 := trX((b.sched.start(i) + ph.dur).Seconds())
		x0, x1 = max(x0, c.Min.X), min(x1, c.Max.X)
		if x1 <= x0 {
			continue
		}
		c.FillPolygon(bandShade[ph.kind], []vg.Point{
			{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
		})
		if b.names {
			c.FillText(sty, vg.Point{X: x0 + vg.Points(3), Y: c.Max.Y - vg.Points(3)}, ph.name)
		}
	}
}

// series are the chart's data: per strategy, the server's load and the
// calls' success rate, per bucket of time.
type series struct {
	load, success map[string]plotter.XYs
	offered       float64
	order         []string
}

// buildSeries buckets the results: load by the arrival of attempts,
// success by the start of calls.
func buildSeries(results []*result, bucket time.Duration, rate float64) series {
	s := series{load: map[string]plotter.XYs{}, success: map[string]plotter.XYs{}, offered: rate}
	for _, r := range results {
		name := r.strat.name
		s.order = append(s.order, name)
		var last time.Duration
		for _, c := range r.calls {
			last = max(last, c.end)
		}
		n := int(last/bucket) + 1
		hits := make([]int, n)
		for _, a := range r.arrivals {
			if k := int(a / bucket); k >= 0 && k < n {
				hits[k]++
			}
		}
		for k, h := range hits {
			s.load[name] = append(s.load[name], plotter.XY{X: (time.Duration(k) * bucket).Seconds(), Y: float64(h) / bucket.Seconds()})
		}
		started, ok := make([]int, n), make([]int, n)
		for _, c := range r.calls {
			if !c.sent {
				continue
			}
			k := int(c.start / bucket)
			if k < 0 || k >= n {
				continue
			}
			started[k]++
			if c.ok {
				ok[k]++
			}
		}
		for k := range started {
			if started[k] > 0 {
				s.success[name] = append(s.success[name], plotter.XY{X: (time.Duration(k) * bucket).Seconds(), Y: 100 * float64(ok[k]) / float64(started[k])})
			}
		}
	}
	return s
}

// writeChart draws the two panels (load above, success below) and writes
// demo.png and demo.svg into dir, returning their paths.
func writeChart(dir string, sched schedule, s series, title string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	load := plot.New()
	load.Title.Text = title
	load.Y.Label.Text = "server load (attempts/s)"
	load.Y.Min = 0
	load.Add(bands{sched: sched, names: true})
	success := plot.New()
	success.X.Label.Text = "time since start (s)"
	success.Y.Label.Text = "calls succeeded (%)"
	success.Y.Min, success.Y.Max = 0, 105
	success.Add(bands{sched: sched})
	end := sched.total().Seconds()
	// A tick at every phase boundary.
	var ticks []plot.Tick
	for i := range sched {
		at := sched.start(i).Seconds()
		ticks = append(ticks, plot.Tick{Value: at, Label: fmt.Sprintf("%.4g", at)})
	}
	ticks = append(ticks, plot.Tick{Value: end, Label: fmt.Sprintf("%.4g", end)})
	for _, p := range []*plot.Plot{load, success} {
		p.X.Min = 0
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.Add(plotter.NewGrid())
	}

	offered, err := plotter.NewLine(plotter.XYs{{X: 0, Y: s.offered}, {X: end, Y: s.offered}})
	if err != nil {
		return nil, err
	}
	offered.Color = color.Gray{Y: 0x80}
	offered.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	load.Add(offered)
	for _, name := range s.order {
		for _, panel := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{load, s.load[name]}, {success, s.success[name]}} {
			if len(panel.xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(panel.xys)
			if err != nil {
				return nil, fmt.Errorf("demo: chart of %s: %w", name, err)
			}
			l.Color = palette[name]
			l.Width = vg.Points(1.2)
			if name == "rebound" {
				l.Width = vg.Points(2.2)
			}
			panel.p.Add(l)
			if panel.p == success {
				success.Legend.Add(name, l)
			}
		}
	}
	success.Legend.Add("offered calls/s (load)", offered)
	// One legend, in the success panel's lower right (the recovered
	// phase), which is empty.
	success.Legend.Top = false
	success.Legend.Left = false
	success.Legend.YOffs = vg.Points(10)
	// Both panels span the same time.
	xmax := max(load.X.Max, success.X.Max)
	load.X.Max, success.X.Max = xmax, xmax

	const w, h = 11 * vg.Inch, 7 * vg.Inch
	draws := []struct {
		path string
		c    interface {
			vg.CanvasSizer
			io.WriterTo
		}
	}{
		{filepath.Join(dir, "demo.png"), vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))}},
		{filepath.Join(dir, "demo.svg"), vgsvg.New(w, h)},
	}
	var paths []string
	for _, d := range draws {
		dc := draw.New(d.c)
		tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
		cs := plot.Align([][]*plot.Plot{{load}, {success}}, tiles, dc)
		load.Draw(cs[0][0])
		success.Draw(cs[1][0])
		f, err := os.Create(d.path)
		if err != nil {
			return nil, err
		}
		if _, err := d.c.WriteTo(f); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, d.path)
	}
	return paths, nil
}

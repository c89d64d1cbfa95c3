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

// palette gives each strategy a colour of the Okabe–Ito set, which
// readers with any common colour-vision deficiency tell apart: black,
// vermillion, orange, reddish purple and blue, no two of them close in
// hue or lightness. Each line also has its own dash pattern (dashes), so
// the lines differ without colour too.
var palette = map[string]color.Color{
	"plain":         color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 0xff}, // black
	"naive":         color.RGBA{R: 0xd5, G: 0x5e, B: 0x00, A: 0xff}, // vermillion
	"retryablehttp": color.RGBA{R: 0xe6, G: 0x9f, B: 0x00, A: 0xff}, // orange
	"failsafe":      color.RGBA{R: 0xcc, G: 0x79, B: 0xa7, A: 0xff}, // reddish purple
	"rebound":       color.RGBA{R: 0x00, G: 0x72, B: 0xb2, A: 0xff}, // blue
}

// dashes gives each strategy a line pattern; rebound's is solid (and
// thicker).
var dashes = map[string][]vg.Length{
	"plain":         {vg.Points(1), vg.Points(2)},
	"naive":         {vg.Points(6), vg.Points(2)},
	"retryablehttp": {vg.Points(3), vg.Points(2), vg.Points(1), vg.Points(2)},
	"failsafe":      {vg.Points(2), vg.Points(2)},
	"rebound":       nil,
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

// note is a key event written on a panel: a marker at (x, y) in data
// coordinates and its text beside it.
type note struct {
	x, y float64
	text string
}

// notes draws a panel's notes over the lines.
type notes []note

// Plot implements plot.Plotter. Each note's text sits in a row of its
// own under the panel's top edge (below the phase names), on a white box,
// with a thin line down to its marker, so notes neither hide the data nor
// each other.
func (ns notes) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := p.X.Tick.Label
	sty.Font.Size = vg.Points(8)
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YCenter
	mark := draw.GlyphStyle{Color: color.Black, Radius: vg.Points(3), Shape: draw.RingGlyph{}}
	leader := draw.LineStyle{Color: color.Gray{Y: 0x40}, Width: vg.Points(0.6)}
	for i, n := range ns {
		pt := vg.Point{X: trX(n.x), Y: trY(n.y)}
		if !c.Contains(pt) {
			continue
		}
		w, h := sty.Width(n.text), sty.Height(n.text)
		at := vg.Point{X: pt.X + vg.Points(4), Y: c.Max.Y - vg.Points(20) - vg.Length(i)*(h+vg.Points(5))}
		if at.X+w > c.Max.X { // keep it inside: write it to the left
			at.X = pt.X - vg.Points(4) - w
		}
		c.StrokeLine2(leader, pt.X, pt.Y, pt.X, at.Y)
		pad := vg.Points(2)
		c.FillPolygon(color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xe6}, []vg.Point{
			{X: at.X - pad, Y: at.Y - h/2 - pad}, {X: at.X + w + pad, Y: at.Y - h/2 - pad},
			{X: at.X + w + pad, Y: at.Y + h/2 + pad}, {X: at.X - pad, Y: at.Y + h/2 + pad},
		})
		c.FillText(sty, at, n.text)
		c.DrawGlyph(mark, pt)
	}
}

// events finds the moments of the run worth a note, from rebound's lines
// (none when rebound did not run): its breaker opening in the outage, its
// first success after the outage, its mean load under the rate limit,
// and its highest load after the outage when that is well over the
// offered rate. They are returned by panel: load, then success.
func events(sched schedule, s series) (load, success notes) {
	l, ok := s.load["rebound"]
	if !ok {
		return nil, nil
	}
	if i := sched.index(outage); i >= 0 {
		from, to := sched.start(i).Seconds(), (sched.start(i) + sched[i].dur).Seconds()
		for _, p := range l {
			if p.X > from && p.X < to && p.Y < s.offered/4 {
				load = append(load, note{x: p.X, y: p.Y, text: "rebound's breaker opens: ~1 probe/s to the dead host"})
				break
			}
		}
		for _, p := range s.success["rebound"] {
			if p.X >= to && p.Y > 0 {
				success = append(success, note{x: p.X, y: p.Y, text: fmt.Sprintf("server back: rebound's first success (+%.1f s)", p.X-to)})
				break
			}
		}
	}
	// rebound's highest load after the outage, when it is well over the
	// offered rate: a release of held calls, or a pace probing up.
	if i := sched.index(outage); i >= 0 {
		from := (sched.start(i) + sched[i].dur).Seconds()
		var peak plotter.XY
		for _, p := range l {
			if p.X >= from && p.Y > peak.Y {
				peak = p
			}
		}
		if peak.Y > 1.5*s.offered {
			load = append(load, note{x: peak.X, y: peak.Y, text: fmt.Sprintf("rebound's peak: %.0f attempts/s, %.1f× the offered rate", peak.Y, peak.Y/s.offered)})
		}
	}
	if i := sched.index(rateLimit); i >= 0 {
		from, to := sched.start(i).Seconds(), (sched.start(i) + sched[i].dur).Seconds()
		var sum float64
		var n int
		for _, p := range l {
			if p.X >= from && p.X < to {
				sum, n = sum+p.Y, n+1
			}
		}
		if n > 0 {
			mid := (from + to) / 2
			var y float64
			for _, p := range l {
				if p.X >= mid {
					y = p.Y
					break
				}
			}
			load = append(load, note{x: mid, y: y, text: fmt.Sprintf("rate limit (half the offered rate): rebound sends %.0f attempts/s", sum/float64(n))})
		}
	}
	return load, success
}

// writeChart draws the two panels (load above, success below), with the
// legend in a column of its own to their right, and writes demo.png and
// demo.svg into dir, returning their paths.
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
	// The legend is drawn beside the panels, never over the data.
	legend := plot.NewLegend()
	legend.TextStyle.Font.Size = vg.Points(10)
	legend.Top, legend.Left = true, true
	legend.ThumbnailWidth = vg.Points(28)
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
			l.Dashes = dashes[name]
			l.Width = vg.Points(1.3)
			if name == "rebound" {
				l.Width = vg.Points(2.4)
			}
			panel.p.Add(l)
			if panel.p == success {
				legend.Add(name, l)
			}
		}
	}
	legend.Add(fmt.Sprintf("offered (%.0f calls/s)", s.offered), offered)
	loadNotes, successNotes := events(sched, s)
	load.Add(loadNotes)
	success.Add(successNotes)
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
		// The panels on the left, the legend in a column on the right.
		const legendWidth = 1.7 * vg.Inch
		panels := draw.Crop(dc, 0, -legendWidth, 0, 0)
		side := draw.Crop(dc, w-legendWidth+vg.Points(6), 0, 0, -vg.Points(40))
		tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
		cs := plot.Align([][]*plot.Plot{{load}, {success}}, tiles, panels)
		load.Draw(cs[0][0])
		success.Draw(cs[1][0])
		legend.Draw(side)
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

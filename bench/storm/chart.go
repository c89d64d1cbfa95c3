package storm

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// palette gives each library its colour in the goodput charts.
var palette = map[string]color.Color{
	"plain":         color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
	"naive":         color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"retryablehttp": color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"failsafe":      color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	"rebound":       color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
}

// heat draws a ρ × N grid of coloured squares, each labelled with its
// cell's verdict. Rows are loads (bottom: lowest), columns fleet sizes.
type heat struct {
	rhos    []float64
	clients []int
	cell    map[[2]int]*Result // [row, column]
}

// shade maps a verdict to a colour: green at 0 s through yellow (10 s) to
// red (60 s), dark for metastable.
func shade(r *Result) color.Color {
	if r.Metastable {
		return color.RGBA{R: 0x30, G: 0x10, B: 0x40, A: 0xff}
	}
	x := math.Min(math.Log1p(r.Recovery.Seconds())/math.Log1p(60), 1)
	if x < 0.5 {
		return color.RGBA{R: uint8(0x40 + 0x3f*2*x*2), G: 0xc0, B: 0x50, A: 0xff}
	}
	y := (x - 0.5) * 2
	return color.RGBA{R: 0xe0, G: uint8(0xc0 * (1 - y)), B: 0x40, A: 0xff}
}

// Plot implements plot.Plotter.
func (h heat) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := draw.TextStyle{Color: color.Black, Font: p.X.Tick.Label.Font, Handler: p.X.Tick.Label.Handler,
		XAlign: draw.XCenter, YAlign: draw.YCenter}
	sty.Font.Size = vg.Points(8)
	for k, r := range h.cell {
		x0, x1 := trX(float64(k[1])-0.5), trX(float64(k[1])+0.5)
		y0, y1 := trY(float64(k[0])-0.5), trY(float64(k[0])+0.5)
		c.FillPolygon(shade(r), []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
		label := "meta"
		if !r.Metastable {
			label = strconv.FormatFloat(r.Recovery.Seconds(), 'f', 1, 64) + "s"
		} else {
			sty.Color = color.White
		}
		c.FillText(sty, vg.Point{X: (x0 + x1) / 2, Y: (y0 + y1) / 2}, label)
		sty.Color = color.Black
	}
}

// DataRange implements plot.DataRanger.
func (h heat) DataRange() (xmin, xmax, ymin, ymax float64) {
	return -0.5, float64(len(h.clients)) - 0.5, -0.5, float64(len(h.rhos)) - 0.5
}

type labels []string

func (l labels) Ticks(min, max float64) []plot.Tick {
	t := make([]plot.Tick, len(l))
	for i, s := range l {
		t[i] = plot.Tick{Value: float64(i), Label: s}
	}
	return t
}

// WriteHeatMaps writes, for each library, heat-<name>.png and .svg into
// dir: one panel per trigger, ρ up, N across, each square the recovery
// time or "meta". It returns the files written.
func WriteHeatMaps(dir string, results []*Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	type key struct {
		lib  string
		mode Mode
	}
	groups := map[key][]*Result{}
	var libs []string
	var modes []Mode
	for _, r := range results {
		k := key{r.Cell.Library.Name, r.Cell.Trigger}
		groups[k] = append(groups[k], r)
		if !slices.Contains(libs, k.lib) {
			libs = append(libs, k.lib)
		}
		if !slices.Contains(modes, k.mode) {
			modes = append(modes, k.mode)
		}
	}
	slices.Sort(modes)
	var files []string
	for _, lib := range libs {
		var plots []*plot.Plot
		for _, m := range modes {
			h := heat{cell: map[[2]int]*Result{}}
			for _, r := range groups[key{lib, m}] {
				if !slices.Contains(h.rhos, r.Cell.Rho) {
					h.rhos = append(h.rhos, r.Cell.Rho)
				}
				if !slices.Contains(h.clients, r.Cell.Clients) {
					h.clients = append(h.clients, r.Cell.Clients)
				}
			}
			slices.Sort(h.rhos)
			slices.Sort(h.clients)
			for _, r := range groups[key{lib, m}] {
				h.cell[[2]int{slices.Index(h.rhos, r.Cell.Rho), slices.Index(h.clients, r.Cell.Clients)}] = r
			}
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s: %s", lib, m)
			p.X.Label.Text = "clients N"
			p.Y.Label.Text = "load ρ"
			var xl, yl labels
			for _, n := range h.clients {
				xl = append(xl, strconv.Itoa(n))
			}
			for _, rho := range h.rhos {
				yl = append(yl, strconv.FormatFloat(rho, 'f', -1, 64))
			}
			p.X.Tick.Marker, p.Y.Tick.Marker = xl, yl
			p.Add(h)
			plots = append(plots, p)
		}
		name := filepath.Join(dir, "heat-"+lib)
		w := vg.Length(len(plots)) * 3.2 * vg.Inch
		written, err := saveRow(name, plots, w, 3.2*vg.Inch)
		if err != nil {
			return files, err
		}
		files = append(files, written...)
	}
	return files, nil
}

// saveRow draws plots side by side and writes name.png and name.svg.
func saveRow(name string, plots []*plot.Plot, w, h vg.Length) ([]string, error) {
	var files []string
	for _, ext := range []string{".png", ".svg"} {
		var canvas vg.CanvasWriterTo
		if ext == ".png" {
			canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))}
		} else {
			canvas = vgsvg.New(w, h)
		}
		dc := draw.New(canvas)
		tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
		grid := [][]*plot.Plot{plots}
		canvases := plot.Align(grid, tiles, dc)
		for i, p := range plots {
			p.Draw(canvases[0][i])
		}
		f, err := os.Create(name + ext)
		if err != nil {
			return files, err
		}
		if _, err := canvas.WriteTo(f); err != nil {
			f.Close()
			return files, err
		}
		if err := f.Close(); err != nil {
			return files, err
		}
		files = append(files, name+ext)
	}
	return files, nil
}

// WriteGoodput writes name.png and name.svg: the goodput (successful
// calls per second, by their end) of each result over time, the offered
// rate as a dashed line, the trigger shaded. The results should share
// their cell but for the library.
func WriteGoodput(name string, results []*Result) ([]string, error) {
	if len(results) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, err
	}
	c := results[0].Cell
	p := plot.New()
	p.Title.Text = fmt.Sprintf("goodput: ρ=%.2f, N=%d, %s for %s", c.Rho, c.Clients, c.Trigger, c.TriggerFor)
	p.X.Label.Text = "time (s, virtual)"
	p.Y.Label.Text = "successful calls/s"
	p.Legend.Top = true
	p.Add(band{from: c.Warmup.Seconds(), to: (c.Warmup + c.TriggerFor).Seconds()})
	offered := c.Rho * c.Server.Capacity()
	var end float64
	for _, r := range results {
		whole := min(len(r.Goodput), int(r.Ran/time.Second)) // the last second may be cut short
		xy := make(plotter.XYs, whole)
		for i, g := range r.Goodput[:whole] {
			xy[i] = plotter.XY{X: float64(i) + 0.5, Y: g}
		}
		end = max(end, float64(len(r.Goodput)))
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = palette[r.Cell.Library.Name]
		l.Width = vg.Points(1.3)
		p.Add(l)
		p.Legend.Add(r.Cell.Library.Name+" ("+r.Verdict()+")", l)
	}
	o, err := plotter.NewLine(plotter.XYs{{X: 0, Y: offered}, {X: end, Y: offered}})
	if err != nil {
		return nil, err
	}
	o.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	o.Color = color.Gray{Y: 0x80}
	p.Add(o)
	p.Legend.Add("offered", o)
	p.Y.Min, p.Y.Max = 0, 2*offered // room for the legend above the lines
	return saveRow(name, []*plot.Plot{p}, 7*vg.Inch, 3.6*vg.Inch)
}

// band shades the trigger's span.
type band struct{ from, to float64 }

// Plot implements plot.Plotter.
func (b band) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x0, x1 := max(trX(b.from), c.Min.X), min(trX(b.to), c.Max.X)
	c.FillPolygon(color.RGBA{R: 0xfd, G: 0xe0, B: 0xe0, A: 0xff},
		[]vg.Point{{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y}})
}

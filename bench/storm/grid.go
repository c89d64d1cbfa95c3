package storm

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Grid is a set of cells: every library × load × fleet size × trigger.
// The zero value has no cells.
type Grid struct {
	Libraries []Library
	Rhos      []float64
	Clients   []int
	Triggers  []Mode
	// Base is copied into every cell before its coordinates are set.
	Base Cell
}

// FullGrid is the grid of the issue: ρ ∈ {0.5, 0.7, 0.8, 0.9, 0.95} × N ∈
// {10, 100, 1,000, 10,000} × the three triggers × every library.
func FullGrid() Grid {
	return Grid{
		Libraries: Libraries,
		Rhos:      []float64{0.5, 0.7, 0.8, 0.9, 0.95},
		Clients:   []int{10, 100, 1000, 10000},
		Triggers:  []Mode{HalfCapacity, Outage, SlowService},
	}
}

// Cells lists the grid's cells, the largest fleets first (they take
// longest, so a parallel run ends evenly).
func (g Grid) Cells() []Cell {
	var cells []Cell
	clients := slices.Clone(g.Clients)
	slices.Sort(clients)
	slices.Reverse(clients)
	for _, n := range clients {
		for _, lib := range g.Libraries {
			for _, rho := range g.Rhos {
				for _, m := range g.Triggers {
					c := g.Base
					c.Library, c.Rho, c.Clients, c.Trigger = lib, rho, n, m
					cells = append(cells, c)
				}
			}
		}
	}
	return cells
}

// ParseGrid narrows FullGrid by the comma-separated lists of a
// specification "libs=plain,rebound rho=0.5,0.9 n=10,100
// trigger=capacity/2,outage,latency×10 retryafter=1s" (any part may be
// left out; "latency" stands for latency×10; retryafter sets the
// server's Retry-After on its 503s; skipgone=true makes it drop waiting
// requests whose client has gone; workers=100 sets the server's workers,
// and so its capacity). An unknown name or a bad number is an error.
func ParseGrid(spec string) (Grid, error) {
	g := FullGrid()
	for _, field := range strings.Fields(spec) {
		key, list, ok := strings.Cut(field, "=")
		if !ok || list == "" {
			return g, fmt.Errorf("storm: grid field %q is not key=list", field)
		}
		items := strings.Split(list, ",")
		switch key {
		case "libs":
			g.Libraries = nil
			for _, name := range items {
				lib, ok := LibraryNamed(name)
				if !ok {
					return g, fmt.Errorf("storm: unknown library %q", name)
				}
				g.Libraries = append(g.Libraries, lib)
			}
		case "rho":
			g.Rhos = nil
			for _, s := range items {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil || !(v > 0 && v < 2) {
					return g, fmt.Errorf("storm: load %q is not a number in (0, 2)", s)
				}
				g.Rhos = append(g.Rhos, v)
			}
		case "n":
			g.Clients = nil
			for _, s := range items {
				v, err := strconv.Atoi(s)
				if err != nil || v < 1 || v > 1_000_000 {
					return g, fmt.Errorf("storm: fleet size %q is not an integer in [1, 10⁶]", s)
				}
				g.Clients = append(g.Clients, v)
			}
		case "trigger":
			g.Triggers = nil
			for _, s := range items {
				m, ok := map[string]Mode{"capacity/2": HalfCapacity, "outage": Outage, "latency×10": SlowService, "latency": SlowService}[s]
				if !ok {
					return g, fmt.Errorf("storm: unknown trigger %q (capacity/2, outage, latency)", s)
				}
				g.Triggers = append(g.Triggers, m)
			}
		case "workers":
			v, err := strconv.Atoi(list)
			if err != nil || v < 1 || v > 100_000 {
				return g, fmt.Errorf("storm: workers %q is not an integer in [1, 100000]", list)
			}
			g.Base.Server.Workers = v
		case "skipgone":
			v, err := strconv.ParseBool(list)
			if err != nil {
				return g, fmt.Errorf("storm: skipgone %q is not a boolean", list)
			}
			g.Base.Server.SkipGone = v
		case "retryafter":
			d, err := time.ParseDuration(list)
			if err != nil || d < 0 || d > time.Hour {
				return g, fmt.Errorf("storm: Retry-After %q is not a duration in [0, 1h]", list)
			}
			g.Base.Server.RetryAfter = d
		default:
			return g, fmt.Errorf("storm: unknown grid key %q (libs, rho, n, trigger, retryafter, skipgone, workers)", key)
		}
	}
	return g, nil
}

// Verdict is a cell's recovery as the tables print it: the seconds from
// the trigger's removal, or "metastable".
func (r *Result) Verdict() string {
	if r.Metastable {
		return "metastable"
	}
	return strconv.FormatFloat(r.Recovery.Seconds(), 'f', 1, 64) + " s"
}

// WriteTable writes results as a Markdown table, one row per cell, in
// the order given.
func WriteTable(w io.Writer, results []*Result) error {
	var b strings.Builder
	deep := slices.ContainsFunc(results, func(r *Result) bool { return r.Cell.Depth > 1 })
	if deep {
		b.WriteString("| depth ")
	}
	b.WriteString("| library | ρ | N | trigger | recovery | amp. during | amp. after | wasted | probes/s while open (peak) | clients refusing (peak) | calls refused unsent (after removal) |\n")
	if deep {
		b.WriteString("| ---: ")
	}
	b.WriteString("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		c := r.Cell
		wasted := 0.0
		if r.Served > 0 {
			wasted = 100 * float64(r.Wasted) / float64(r.Served)
		}
		if deep {
			fmt.Fprintf(&b, "| %d ", c.Depth)
		}
		name := c.Library.Name
		if c.Layer {
			name += " + Layer"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %d | %s | %s | %.2f | %.2f | %.0f %% | %.1f (%.0f) | %d | %d (%d) |\n",
			name, c.Rho, c.Clients, c.Trigger, r.Verdict(), r.AmpDuring, r.AmpAfter, wasted, r.ProbeRate, r.ProbePeak, r.OpenPeak, r.Local, r.LocalAfter)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Duration formats a real duration for the reports.
func Duration(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

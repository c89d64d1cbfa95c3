package storm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestStormGrid runs the grid named by STORM_GRID ("full", or a ParseGrid
// specification such as "libs=plain,rebound rho=0.9 n=10,1000") and
// writes its table, heat maps and goodput charts into STORM_OUT (default
// ../../docs/storm). Without STORM_GRID it is skipped: make storm runs it.
// Cells run in parallel, one bubble each.
func TestStormGrid(t *testing.T) {
	spec := os.Getenv("STORM_GRID")
	if spec == "" {
		t.Skip("STORM_GRID is not set (make storm sets it)")
	}
	if spec == "full" {
		spec = ""
	}
	g, err := ParseGrid(spec)
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("STORM_OUT")
	if out == "" {
		out = filepath.Join("..", "..", "docs", "storm")
	}
	cells := g.Cells()
	start := time.Now()
	results := runCells(t, cells)
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}
	var table bytes.Buffer
	fmt.Fprintf(&table, "<!-- %d cells in %s real time on %d cores (GOMAXPROCS %d), %s -->\n\n",
		len(results), Duration(elapsed), runtime.NumCPU(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "results.md"), table.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := WriteHeatMaps(out, results)
	if err != nil {
		t.Fatal(err)
	}
	// Goodput over time for a few cells: every library on the same storm.
	for _, pick := range []struct {
		rho float64
		n   int
		m   Mode
	}{{0.9, 1000, HalfCapacity}, {0.9, 10, Outage}, {0.95, 10000, SlowService}, {0.7, 100, SlowService}} {
		var same []*Result
		for _, r := range results {
			if r.Cell.Rho == pick.rho && r.Cell.Clients == pick.n && r.Cell.Trigger == pick.m {
				same = append(same, r)
			}
		}
		name := filepath.Join(out, fmt.Sprintf("goodput-rho%g-n%d-%s", pick.rho, pick.n, fileName(pick.m)))
		f, err := WriteGoodput(name, same)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f...)
	}
	t.Logf("%d cells in %s; wrote %s/results.md and %d charts", len(results), Duration(elapsed), out, len(files))
}

// fileName is a mode's name fit for a file.
func fileName(m Mode) string {
	return map[Mode]string{Healthy: "healthy", HalfCapacity: "capacity-half", Outage: "outage", SlowService: "latency-x10"}[m]
}

// runCells runs every cell in its own parallel subtest and returns the
// results in the cells' order.
func runCells(t *testing.T, cells []Cell) []*Result {
	results := make([]*Result, len(cells))
	var mu sync.Mutex
	t.Run("cells", func(t *testing.T) {
		for i, c := range cells {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				r, real := runCell(t, c)
				t.Logf("%s in %s real, %s virtual", r.Verdict(), Duration(real), Duration(r.Ran))
				mu.Lock()
				results[i] = r
				mu.Unlock()
			})
		}
	})
	slices.SortStableFunc(results, func(a, b *Result) int {
		if a == nil || b == nil {
			return 0
		}
		return compareCells(a.Cell, b.Cell)
	})
	return results
}

// compareCells orders cells by depth, library (in Libraries' order), trigger,
// load, then fleet size.
func compareCells(a, b Cell) int {
	index := func(name string) int {
		return slices.IndexFunc(Libraries, func(l Library) bool { return l.Name == name })
	}
	switch {
	case a.Depth != b.Depth:
		return a.Depth - b.Depth
	case a.Library.Name != b.Library.Name:
		return index(a.Library.Name) - index(b.Library.Name)
	case a.Trigger != b.Trigger:
		return int(a.Trigger) - int(b.Trigger)
	case a.Rho != b.Rho:
		if a.Rho < b.Rho {
			return -1
		}
		return 1
	}
	return a.Clients - b.Clients
}

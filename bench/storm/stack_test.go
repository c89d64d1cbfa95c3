package storm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStormStack runs stacked services (the fleet calls A, A calls B, B
// calls C; each caller uses the library; the trigger hits C): every
// library at depth 1 to 3, ρ = 0.5 and 0.9, 10 and 1,000 clients,
// capacity halved and a full outage, and rebound again with its middle
// layers wrapped in rebound.Layer. Amplification is C's attempts per
// call of the fleet. Run by make storm (STORM_STACK=1); writes stack.md
// into STORM_OUT.
func TestStormStack(t *testing.T) {
	if os.Getenv("STORM_STACK") == "" {
		t.Skip("STORM_STACK is not set (make storm sets it)")
	}
	out := os.Getenv("STORM_OUT")
	if out == "" {
		out = filepath.Join("..", "..", "docs", "storm")
	}
	var cells []Cell
	for _, depth := range []int{1, 2, 3} {
		g := Grid{Libraries: Libraries, Rhos: []float64{0.5, 0.9}, Clients: []int{10, 1000},
			Triggers: []Mode{HalfCapacity, Outage}, Base: Cell{Depth: depth}}
		cells = append(cells, g.Cells()...)
		if depth > 1 {
			// rebound with its middle layers wrapped in rebound.Layer.
			g.Libraries, g.Base.Layer = []Library{libraryNamed(t, "rebound")}, true
			cells = append(cells, g.Cells()...)
		}
	}
	start := time.Now()
	results := runCells(t, cells)
	if t.Failed() {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<!-- %d cells in %s real time, %s -->\n\n", len(cells), Duration(time.Since(start)), time.Now().UTC().Format(time.RFC3339))
	if err := WriteTable(&b, results); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "stack.md"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

// libraryNamed returns the library of Libraries called name.
func libraryNamed(t *testing.T, name string) Library {
	t.Helper()
	for _, l := range Libraries {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no library %q", name)
	return Library{}
}

package storm

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/budget"
)

// budgetLibrary is rebound's default chain with its retry budget set to
// ratio of first attempts plus floor retries per second (a negative
// floor: none).
func budgetLibrary(ratio, floor float64) Library {
	name := fmt.Sprintf("rebound %g%%+%g/s", 100*ratio, max(floor, 0))
	return Library{
		Name:  name,
		Setup: "rebound.NewTransport with Policy.Budget.Ratio " + name,
		New: func(base http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{
				Budget: budget.Config{Ratio: budget.RatioConfig{Ratio: ratio, MinPerSecond: floor}},
			}))
		},
	}
}

// TestAmplificationTradeoff is the retry budget's trade-off, measured:
// each budget in front of a server failing a share p of attempts at
// random (answered 503 at once), for 100 s of calls at ρ = 0.5 spread
// over N processes; the share of calls that succeed at p = 10–30 %, and
// the attempts per call at p = 100 % (fleet-wide over the run, the worst
// fleet-wide run of ≥ 1,000 calls, the worst process with ≥ 1,000 calls).
// Run by make storm (STORM_TRADEOFF=1); writes tradeoff.md into
// STORM_OUT.
func TestAmplificationTradeoff(t *testing.T) {
	if os.Getenv("STORM_TRADEOFF") == "" {
		t.Skip("STORM_TRADEOFF is not set (make storm sets it)")
	}
	out := os.Getenv("STORM_OUT")
	if out == "" {
		out = filepath.Join("..", "..", "docs", "storm")
	}
	libs := []Library{Libraries[0], budgetLibrary(0.2, 10), budgetLibrary(0.2, 1), budgetLibrary(0.1, 1),
		budgetLibrary(0.1, 0.1), budgetLibrary(0.1, -1), budgetLibrary(0.05, -1)}
	libs[1].Name += " (default)"
	shares := []float64{0.1, 0.2, 0.3, 1}
	fleets := []int{10, 1000, 10000}
	var cells []Cell
	for _, lib := range libs {
		for _, n := range fleets {
			for _, p := range shares {
				cells = append(cells, Cell{Library: lib, Rho: 0.5, Clients: n, Trigger: Healthy,
					Server: ServerConfig{FailShare: p}, Warmup: 5 * time.Second, TriggerFor: 100 * time.Second,
					Patience: time.Second, Stable: time.Second})
			}
		}
	}
	start := time.Now()
	results := runCells(t, cells)
	if t.Failed() {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<!-- %d cells in %s real time, %s -->\n\n", len(cells), Duration(time.Since(start)), time.Now().UTC().Format(time.RFC3339))
	b.WriteString("| budget | N | success at p=10 % | 20 % | 30 % | attempts/call at p=100 %: fleet, run | worst ≥1,000-call fleet window | worst process (≥1,000 calls) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i := 0; i < len(results); i += len(shares) {
		row := results[i : i+len(shares)]
		c := row[0].Cell
		full := row[len(row)-1]
		client := "—"
		if full.AmpClients > 0 {
			client = fmt.Sprintf("%.2f", full.AmpClientMax)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f %% | %.1f %% | %.1f %% | %.2f | %.2f | %s |\n", c.Library.Name, c.Clients,
			100*row[0].Success, 100*row[1].Success, 100*row[2].Success, float64(full.Attempts)/float64(full.Calls), full.AmpWindowMax, client)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "tradeoff.md"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

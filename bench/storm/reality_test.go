package storm

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestRealityCheck replays three cells on real sockets (the model behind
// an httptest.Server on 127.0.0.1, every process with its own
// http.Transport, real time) and compares their recovery times with the
// same cells in virtual time: they must agree within 20 % (or 1 s, the
// resolution of two recovery windows). Run by make storm
// (STORM_REALITY=1, about a minute and a half); writes reality.md into
// STORM_OUT.
func TestRealityCheck(t *testing.T) {
	if os.Getenv("STORM_REALITY") == "" {
		t.Skip("STORM_REALITY is not set (make storm sets it)")
	}
	out := os.Getenv("STORM_OUT")
	if out == "" {
		out = filepath.Join("..", "..", "docs", "storm")
	}
	plain, _ := LibraryNamed("plain")
	rebound, _ := LibraryNamed("rebound")
	cells := []Cell{
		{Library: plain, Rho: 0.9, Clients: 20, Trigger: HalfCapacity},
		{Library: plain, Rho: 0.8, Clients: 200, Trigger: SlowService},
		{Library: rebound, Rho: 0.9, Clients: 200, Trigger: HalfCapacity},
	}
	sim := make([]*Result, len(cells))
	real := make([]*Result, len(cells))
	var wg sync.WaitGroup
	for i, c := range cells {
		sim[i], _ = runCell(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Loopback = true
			real[i] = Run(c)
		}()
	}
	wg.Wait()
	var b bytes.Buffer
	fmt.Fprintf(&b, "<!-- %s -->\n\n", time.Now().UTC().Format(time.RFC3339))
	b.WriteString("| cell | recovery, virtual time | recovery, loopback | amp. during (virtual, loopback) | wasted (virtual, loopback) |\n| --- | ---: | ---: | ---: | ---: |\n")
	for i, c := range cells {
		s, r := sim[i], real[i]
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f, %.2f | %d, %d |\n", c, s.Verdict(), r.Verdict(), s.AmpDuring, r.AmpDuring, s.Wasted, r.Wasted)
		if s.Metastable != r.Metastable {
			t.Errorf("%s: %s in virtual time, %s on loopback", c, s.Verdict(), r.Verdict())
			continue
		}
		if d := math.Abs(s.Recovery.Seconds() - r.Recovery.Seconds()); d > max(0.2*s.Recovery.Seconds(), 1) {
			t.Errorf("%s: recovered in %s in virtual time, %s on loopback: more than 20 %% apart", c, s.Verdict(), r.Verdict())
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "reality.md"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

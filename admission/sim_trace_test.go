package admission_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/transport"
)

// TestSimTrace prints, every 100 ms of virtual time, the learned pace and
// the limiter's counts of one cell named by REBOUND_SIM_TRACE
// ("kind/loop/rate", as the cells' subtest names): a diagnostic, skipped
// without it.
func TestSimTrace(t *testing.T) {
	name := os.Getenv("REBOUND_SIM_TRACE")
	if name == "" {
		t.Skip("REBOUND_SIM_TRACE not set")
	}
	var cell simCell
	found := false
	for _, kind := range []limiterKind{tokenHint, tokenBare, gcra, windowHeaders, windowBare} {
		for _, open := range []bool{false, true} {
			for _, r := range simRates {
				c := simCell{kind: kind, open: open, rate: r, dur: 60 * time.Second}
				if c.String() == name {
					cell, found = c, true
				}
			}
		}
	}
	if !found {
		t.Fatalf("no cell %q", name)
	}
	synctest.Test(t, func(t *testing.T) {
		var b strings.Builder
		done := make(chan struct{})
		runCell(t, cell, func(l *limiter, tr *transport.Transport) {
			go func() {
				defer close(done)
				var pa, pr int
				for i := 1; i <= int(cell.dur/(100*time.Millisecond)); i++ {
					time.Sleep(100 * time.Millisecond)
					a, r := l.total()
					var k admission.KeyState
					if hs := tr.Admission(); len(hs) == 1 && len(hs[0].Keys) == 1 {
						k = hs[0].Keys[0]
					}
					fmt.Fprintf(&b, "%6.1f pace %8.2f quota left %5d reset %6s queue %3d admitted %4d refused %4d\n",
						float64(i)/10, k.Pace, k.QuotaLeft, k.QuotaReset.Round(time.Millisecond), k.Queued, a-pa, r-pr)
					pa, pr = a, r
				}
			}()
		})
		<-done
		t.Log("\n" + b.String())
	})
}

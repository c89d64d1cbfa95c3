package storm

import (
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
)

// TestBreakerTimeline shows where rebound's extra recovery time comes
// from in the cells where it trails the plain client: when its
// processes' breakers trip and close, relative to the trigger's removal,
// at ρ = 0.8 with latency ×10, for 10 and 100 processes, with and without
// a server that drops requests whose client has gone. It asserts
// nothing; run it with STORM_TIMELINE=1 go test -run TestBreakerTimeline
// -v ./storm.
func TestBreakerTimeline(t *testing.T) {
	if os.Getenv("STORM_TIMELINE") == "" {
		t.Skip("STORM_TIMELINE is not set")
	}
	for _, skip := range []bool{false, true} {
		for _, n := range []int{10, 100} {
			var mu sync.Mutex
			var removal time.Time
			var trips, closes []float64
			lib := Library{Name: "rebound", New: func(base http.RoundTripper) http.RoundTripper {
				return rebound.NewTransport(base, rebound.WithObserver(rebound.Observer{Breaker: func(sc breaker.StateChange) {
					mu.Lock()
					defer mu.Unlock()
					at := time.Since(removal).Seconds()
					if sc.To == breaker.Open {
						trips = append(trips, at)
					} else {
						closes = append(closes, at)
					}
				}}))
			}}
			c := Cell{Library: lib, Rho: 0.8, Clients: n, Trigger: SlowService, Server: ServerConfig{SkipGone: skip}}
			var r *Result
			runIn(t, func() {
				removal = time.Now().Add(DefaultWarmup + DefaultTriggerFor)
				r = Run(c)
			})
			slices.Sort(trips)
			slices.Sort(closes)
			q := func(xs []float64, p float64) float64 {
				if len(xs) == 0 {
					return 0
				}
				return xs[int(p*float64(len(xs)-1))]
			}
			t.Logf("skipgone=%v N=%d: recovery %s; %d trips (first %.2f s, last %.2f s from the removal); %d closes (first %.2f s, median %.2f s, last %.2f s); %d calls refused unsent after the removal",
				skip, n, r.Verdict(), len(trips), q(trips, 0), q(trips, 1), len(closes), q(closes, 0), q(closes, 0.5), q(closes, 1), r.LocalAfter)
		}
	}
}

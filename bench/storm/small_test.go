package storm

import (
	"math"
	"testing"
	"time"
)

// TestStormSmall is the grid's small corner that runs with every go test
// (5 s without -race): every library at ρ = 0.5 and 0.9, 10 and 100
// clients, capacity halved and a full outage. Under -race, twenty times
// slower, only the libraries it asserts about (plain, naive, rebound).
// It asserts what holds today and would break if the model or a library
// regressed:
//   - the model drains as a fluid queue says: a plain client recovers
//     from capacity halved at ρ = 0.9 when the dead requests (those older
//     than the deadline) have been served, (Q − C·D)/(C·(1−ρ)) = 20 s
//     after the removal, for every N;
//   - the model can be metastable: the naive loop, whose timed-out
//     attempts are retried while they still wait at the server, has not
//     recovered 60 s after capacity halved at ρ = 0.9;
//   - at ρ = 0.5 the plain client and rebound recover within 2 s of any
//     trigger's removal, and a plain client at once after an outage
//     (its queue is gone with it).
func TestStormSmall(t *testing.T) {
	libs := Libraries
	if raceEnabled {
		libs = nil
		for _, name := range []string{"plain", "naive", "rebound"} {
			l, _ := LibraryNamed(name)
			libs = append(libs, l)
		}
	}
	g := Grid{
		Libraries: libs,
		Rhos:      []float64{0.5, 0.9},
		Clients:   []int{10, 100},
		Triggers:  []Mode{HalfCapacity, Outage},
	}
	results := runCells(t, g.Cells())
	if t.Failed() {
		return
	}
	for _, r := range results {
		c := r.Cell
		t.Logf("%-36s %-10s amp %.2f/%.2f wasted %d of %d", c, r.Verdict(), r.AmpDuring, r.AmpAfter, r.Wasted, r.Served)
		if r.Before < 0.99 {
			t.Errorf("%s: only %.3f of the calls succeeded before the trigger", c, r.Before)
		}
		switch {
		case c.Library.Name == "plain" && c.Rho == 0.9 && c.Trigger == HalfCapacity:
			s := c.normalized().Server
			capacity := s.Capacity()
			want := (float64(s.QueueLimit) - capacity*c.normalized().Deadline.Seconds()) / (capacity * (1 - c.Rho))
			if r.Metastable || math.Abs(r.Recovery.Seconds()/want-1) > 0.1 {
				t.Errorf("%s: recovered in %s, the fluid queue says %.1f s (±10 %%)", c, r.Verdict(), want)
			}
		case c.Library.Name == "naive" && c.Rho == 0.9 && c.Trigger == HalfCapacity:
			if !r.Metastable {
				t.Errorf("%s: recovered in %s; the naive loop's retries of abandoned attempts should keep the queue full", c, r.Verdict())
			}
		case (c.Library.Name == "plain" || c.Library.Name == "rebound") && c.Rho == 0.5:
			if r.Metastable || r.Recovery > 2*time.Second {
				t.Errorf("%s: recovered in %s, want ≤ 2 s", c, r.Verdict())
			}
		}
		if c.Library.Name == "plain" && c.Trigger == Outage && (r.Metastable || r.Recovery != 0) {
			t.Errorf("%s: recovered in %s, want at once", c, r.Verdict())
		}
	}
}

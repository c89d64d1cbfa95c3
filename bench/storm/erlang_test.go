package storm

import (
	"math"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

func TestErlangC(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    int
		a    float64
		want float64
	}{
		// Textbook values: one server waits with probability ρ; two
		// servers at a = 1 wait with probability 1/3.
		{"M/M/1 at 0.7", 1, 0.7, 0.7},
		{"M/M/2 at a=1", 2, 1, 1.0 / 3},
		// c=10, a=8: the Erlang C table's 0.4092.
		{"M/M/10 at a=8", 10, 8, 0.40918},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ErlangC(tc.c, tc.a)
			if err != nil || math.Abs(got-tc.want) > 1e-4 {
				t.Fatalf("ErlangC(%d, %g) = %g, %v; want %g", tc.c, tc.a, got, err, tc.want)
			}
		})
	}
	for _, bad := range []struct {
		c int
		a float64
	}{{0, 0.5}, {2, 0}, {2, 2}, {2, 3}, {2, math.NaN()}} {
		if _, err := ErlangC(bad.c, bad.a); err == nil {
			t.Errorf("ErlangC(%d, %g) gave no error", bad.c, bad.a)
		}
	}
}

// TestServerMatchesMMc feeds the server model Poisson arrivals with an
// unbounded queue, no deadlines and exponential service (M/M/c) and checks
// the measured utilisation and mean wait against Erlang C, within 5 %, at
// ρ = 0.5 to 0.9. Each ρ averages several independent runs (batches) so
// the test also checks that the estimate is tight enough to mean
// something: its standard error must be under 2 % of the theory. The
// runs are deterministic for their seeds (one goroutine draws arrivals,
// service ends are timers of the bubble's virtual clock).
func TestServerMatchesMMc(t *testing.T) {
	const c = 2
	const service = 100 * time.Millisecond
	for _, tc := range []struct {
		rho     float64
		horizon time.Duration // enough for a standard error under 2 %
	}{
		{0.5, 240 * time.Minute},
		{0.7, 300 * time.Minute},
		{0.8, 600 * time.Minute},
		{0.9, 1200 * time.Minute},
	} {
		rho, horizon := tc.rho, tc.horizon
		t.Run("rho="+ftoa(rho), func(t *testing.T) {
			if raceEnabled {
				// 20 times slower: minutes. The runs are deterministic
				// for their seeds, so the run without -race (make
				// storm) is the check.
				t.Skip("the M/M/c check runs without -race (make storm)")
			}
			t.Parallel()
			const batches = 8
			var utils, waits []float64
			for b := range batches {
				u, w := simulateMMc(t, c, service, rho, horizon/batches, uint64(b+1))
				utils, waits = append(utils, u), append(waits, w.Seconds())
			}
			wantWait, err := MMcWait(c, service, rho)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, xs []float64, want float64) {
				m, se := meanSE(xs)
				t.Logf("%s: %.5f ± %.5f (theory %.5f, %+.2f %%)", what, m, se, want, 100*(m/want-1))
				if math.Abs(m/want-1) > 0.05 {
					t.Errorf("%s = %.5f, theory %.5f: off by more than 5 %%", what, m, want)
				}
				if se/want > 0.02 {
					t.Errorf("%s: standard error %.5f is over 2 %% of %.5f; the test is too short to judge", what, se, want)
				}
			}
			check("utilisation", utils, rho)
			check("mean wait (s)", waits, wantWait.Seconds())
		})
	}
}

// simulateMMc runs one M/M/c batch in a bubble: a warm-up of a tenth of
// the horizon, then the measured horizon.
func simulateMMc(t *testing.T, c int, service time.Duration, rho float64, horizon time.Duration, seed uint64) (util float64, wait time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(ServerConfig{Workers: c, Service: service, QueueLimit: math.MaxInt32, Seed: seed}, nil)
		rng := rand.New(rand.NewPCG(seed, 7))
		rate := rho * float64(c) / service.Seconds()
		warm := horizon / 10
		start := time.Now()
		reset := false
		for {
			time.Sleep(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
			if !reset && time.Since(start) >= warm {
				s.ResetStats()
				reset = true
			}
			if time.Since(start) >= warm+horizon {
				break
			}
			if _, _, err := s.admit(time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		st := s.Stats()
		util = st.BusyWorkerSeconds / (float64(c) * horizon.Seconds())
		wait = st.MeanWait
		s.SetMode(Outage) // ends the work in progress and its timers
	})
	return util, wait
}

func meanSE(xs []float64) (mean, se float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1) / float64(len(xs)))
}

func ftoa(f float64) string { return strconvFloat(f) }

package breaker

import (
	"math"
	"math/rand/v2"
	"testing"
)

// simTrials is how many fresh clients each scenario of TestTripOdds
// simulates: 100,000 (the README's figures), 10,000 under the race
// detector or -short, to keep the test to a few seconds there.
func simTrials() int {
	if raceEnabled || testing.Short() {
		return 10_000
	}
	return 100_000
}

// simulate runs trials fresh clients of the trip rule r through up to n
// outcomes each, every call failing independently with probability p, at
// one call per gap ticks of the score clock (0: a busy host, many calls
// per tick). It returns, per trial, the call that tripped the breaker
// (from 1), or 0 if none did. It uses the rule's pure step function, as
// the breaker does, with a fixed seed, so the test is reproducible.
func simulate(r *rule, trials, n int, p float64, gap uint32, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]int, trials)
	for i := range out {
		now := uint32(1 << 20)
		w := r.fresh(now)
		for call := 1; call <= n; call++ {
			if gap == 0 {
				now += uint32(call & 1) // a tick every other call: busy, but the clock moves
			} else {
				now += gap
			}
			var trip int
			if w, trip = r.next(w, rng.Float64() < p, now); trip != 0 {
				out[i] = call
				break
			}
		}
	}
	return out
}

// tripsBy returns the share of trials that tripped at or before call n.
func tripsBy(calls []int, n int) float64 {
	k := 0
	for _, c := range calls {
		if c != 0 && c <= n {
			k++
		}
	}
	return float64(k) / float64(len(calls))
}

// poissonUpper returns a count that a Poisson variable of mean lambda
// exceeds with probability below 10⁻⁶: the most trips a bound of lambda
// expected trips allows, with room for chance.
func poissonUpper(lambda float64) int {
	term := math.Exp(-lambda)
	cdf := term
	k := 0
	for 1-cdf > 1e-6 {
		k++
		term *= lambda / float64(k)
		cdf += term
	}
	return k
}

// TestTripOdds simulates fresh clients of the default trip rule and checks
// the rates against the package doc's bounds: false trips of busy hosts
// failing 30 % and 20 % of calls over 1,000 calls, and detection of a dead
// host (fresh, quiet, or healthy until it died) and of a 60 % host.
func TestTripOdds(t *testing.T) {
	s := newSettings(Config{})
	r := &s.rule
	trials := simTrials()

	t.Run("busy host failing 30 %", func(t *testing.T) {
		bound := r.falseTripBound(0.3, 1000)
		if bound > 1e-4 {
			t.Fatalf("the rule's false-trip bound at 30 %% is %.3g, above 1e-4", bound)
		}
		got := simulate(r, trials, 1000, 0.3, 0, 1)
		trips := int(tripsBy(got, 1000)*float64(trials) + 0.5)
		t.Logf("30 %%: %d of %d fresh clients tripped within 1,000 calls (rate %.2g; bound %.2g)", trips, trials, float64(trips)/float64(trials), bound)
		if max := poissonUpper(bound * float64(trials)); trips > max {
			t.Fatalf("%d trips, more than the bound allows (%d)", trips, max)
		}
	})

	t.Run("busy host failing 20 %", func(t *testing.T) {
		bound := r.falseTripBound(0.2, 1000)
		got := simulate(r, trials, 1000, 0.2, 0, 2)
		trips := int(tripsBy(got, 1000)*float64(trials) + 0.5)
		t.Logf("20 %%: %d of %d fresh clients tripped within 1,000 calls (bound %.2g)", trips, trials, bound)
		if max := poissonUpper(bound * float64(trials)); trips > max {
			t.Fatalf("%d trips, more than the bound allows (%d)", trips, max)
		}
	})

	t.Run("busy host failing 60 %", func(t *testing.T) {
		got := simulate(r, trials, 400, 0.6, 0, 3)
		by100, by150, by200 := tripsBy(got, 100), tripsBy(got, 150), tripsBy(got, 200)
		t.Logf("60 %%: tripped within 100 calls %.2f %%, 150 %.3f %%, 200 %.4f %%; median call %d",
			100*by100, 100*by150, 100*by200, median(got))
		// Hoeffding's bound on the degraded test's walk (package doc),
		// less four standard errors of the estimate.
		slack := 4 / math.Sqrt(float64(trials))
		for _, c := range []struct {
			n   int
			got float64
		}{{100, by100}, {150, by150}, {200, by200}} {
			if want := r.degraded.detectBound(0.6, c.n) - slack; c.got < want {
				t.Errorf("tripped within %d calls: %.4f, want at least %.4f", c.n, c.got, want)
			}
		}
	})

	t.Run("dead host", func(t *testing.T) {
		for _, c := range []struct {
			name string
			gap  uint32
		}{
			{"busy", 0},
			{"quiet: a call every minute", 6 * quietUnits},
			{"quiet: a call every hour", 360 * quietUnits},
		} {
			got := simulate(r, 10, 1000, 1, c.gap, 4)
			for _, call := range got {
				if call != DefaultMinCalls {
					t.Errorf("%s: tripped at call %d, want %d", c.name, call, DefaultMinCalls)
				}
			}
		}
	})

	t.Run("busy host healthy until it dies", func(t *testing.T) {
		w := r.fresh(0)
		for range 1000 {
			w, _ = r.next(w, false, 0)
		}
		for call := 1; ; call++ {
			var trip int
			if w, trip = r.next(w, true, 0); trip != 0 {
				if call > DefaultMinCalls+7 {
					t.Fatalf("tripped at failure %d, want at most %d", call, DefaultMinCalls+7)
				}
				t.Logf("a healthy busy host that dies trips at failure %d", call)
				return
			}
		}
	})
}

// median returns the median trip call of the trials that tripped.
func median(calls []int) int {
	hist := map[int]int{}
	n := 0
	for _, c := range calls {
		if c != 0 {
			hist[c]++
			n++
		}
	}
	seen := 0
	for c := 1; ; c++ {
		if seen += hist[c]; 2*seen >= n {
			return c
		}
	}
}

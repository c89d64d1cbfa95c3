package transport

import (
	"math"
	"testing"
	"time"
)

// FuzzTailConfig feeds the normaliser of HedgeConfig and
// LearnedTimeoutConfig any numbers: what comes out is always usable (a
// quantile in (0, 1), positive bounds in order, a multiplier of at least
// 1, at least one hedge and one sample), and the race's attempt count
// never overflows.
func FuzzTailConfig(f *testing.F) {
	f.Add(0, int64(0), 0.0, int64(0), int64(0), 0, 0.0, 0.0, int64(0), int64(0), 0, 4)
	f.Add(math.MaxInt, int64(-1), math.NaN(), int64(math.MaxInt64), int64(1), -1, math.Inf(1), math.NaN(), int64(-1), int64(math.MinInt64), math.MinInt, math.MaxInt)
	f.Add(2, int64(time.Millisecond), 0.9, int64(time.Second), int64(time.Millisecond), 100, 0.999, 3.0, int64(time.Minute), int64(time.Second), 1, 1)
	f.Fuzz(func(t *testing.T, maxHedges int, delay int64, q float64, minD, maxD int64, minS int, lq, mult float64, minT, maxT int64, lminS, maxAttempts int) {
		cfg := Config{
			MaxAttempts:    maxAttempts,
			Hedge:          &HedgeConfig{MaxHedges: maxHedges, Delay: time.Duration(delay), Quantile: q, MinDelay: time.Duration(minD), MaxDelay: time.Duration(maxD), MinSamples: minS},
			LearnedTimeout: &LearnedTimeoutConfig{Quantile: lq, Multiplier: mult, MinTimeout: time.Duration(minT), MaxTimeout: time.Duration(maxT), MinSamples: lminS},
		}.normalize()
		h, l := cfg.Hedge, cfg.LearnedTimeout
		if h.MaxHedges < 1 || h.Delay < 0 || !(h.Quantile > 0 && h.Quantile < 1) || h.MinDelay <= 0 || h.MaxDelay < h.MinDelay || h.MinSamples < 1 {
			t.Fatalf("hedge config not usable: %+v", *h)
		}
		if !(l.Quantile > 0 && l.Quantile < 1) || !(l.Multiplier >= 1) || math.IsInf(l.Multiplier, 0) || l.MinTimeout <= 0 || l.MaxTimeout < l.MinTimeout || l.MinSamples < 1 {
			t.Fatalf("learned timeout config not usable: %+v", *l)
		}
		for n := 1; n <= min(cfg.MaxAttempts, 3); n++ {
			if most := raceSize(n, cfg.MaxAttempts, h.MaxHedges); most < n || most > cfg.MaxAttempts {
				t.Fatalf("race of attempt %d of %d with %d hedges ends at %d", n, cfg.MaxAttempts, h.MaxHedges, most)
			}
		}
	})
}

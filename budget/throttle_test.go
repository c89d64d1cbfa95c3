package budget_test

import (
	"math"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
)

func TestRejectProbability(t *testing.T) {
	tests := []struct {
		name              string
		requests, accepts float64
		k                 float64
		want              float64
	}{
		{name: "no traffic", requests: 0, accepts: 0, k: 2, want: 0},
		{name: "all accepted", requests: 100, accepts: 100, k: 2, want: 0},
		{name: "half accepted, k=2: at the edge", requests: 100, accepts: 50, k: 2, want: 0},
		{name: "nothing accepted", requests: 10, accepts: 0, k: 2, want: 10.0 / 11},
		{name: "10% accepted", requests: 100, accepts: 10, k: 2, want: 80.0 / 101},
		{name: "10% accepted, k=1", requests: 100, accepts: 10, k: 1, want: 90.0 / 101},
		{name: "k below 1 rejects some even when all accepted", requests: 100, accepts: 100, k: 0.5, want: 50.0 / 101},
		{name: "negative requests", requests: -5, accepts: 0, k: 2, want: 0},
		{name: "negative accepts count as none", requests: 9, accepts: -3, k: 2, want: 0.9},
		{name: "NaN requests", requests: math.NaN(), accepts: 0, k: 2, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := budget.RejectProbability(tt.requests, tt.accepts, tt.k)
			if math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("RejectProbability(%v, %v, %v) = %v, want %v", tt.requests, tt.accepts, tt.k, got, tt.want)
			}
		})
	}
}

// fixedRand returns the values in turn, then the last one forever.
func fixedRand(vals ...float64) func() float64 {
	i := 0
	return func() float64 {
		v := vals[min(i, len(vals)-1)]
		i++
		return v
	}
}

func TestThrottleAllow(t *testing.T) {
	type rec struct {
		at       time.Duration
		n        int
		accepted bool
	}
	tests := []struct {
		name      string
		cfg       budget.ThrottleConfig
		records   []rec
		at        time.Duration
		draw      float64 // the random number Allow compares with
		wantP     float64
		wantAllow bool
	}{
		{name: "fresh throttle allows", draw: 0, wantP: 0, wantAllow: true},
		{
			name:    "healthy server: never rejects",
			records: []rec{{n: 100, accepted: true}},
			draw:    0, wantP: 0, wantAllow: true,
		},
		{
			name:    "10% accepted: draw below p rejects",
			records: []rec{{n: 90}, {n: 10, accepted: true}},
			draw:    0.79, wantP: 80.0 / 101, wantAllow: false,
		},
		{
			name:    "10% accepted: draw at p allows",
			records: []rec{{n: 90}, {n: 10, accepted: true}},
			draw:    80.0 / 101, wantP: 80.0 / 101, wantAllow: true,
		},
		{
			name:    "K from the config",
			cfg:     budget.ThrottleConfig{K: 1},
			records: []rec{{n: 90}, {n: 10, accepted: true}},
			draw:    0.85, wantP: 90.0 / 101, wantAllow: false,
		},
		{
			name:    "failures older than the window are forgotten",
			cfg:     budget.ThrottleConfig{Window: 10 * time.Second},
			records: []rec{{at: 0, n: 100}},
			at:      10 * time.Second,
			draw:    0, wantP: 0, wantAllow: true,
		},
		{
			name:    "default window is two minutes",
			records: []rec{{at: 0, n: 100}},
			at:      119 * time.Second,
			draw:    0.5, wantP: 100.0 / 101, wantAllow: false,
		},
		{
			name:    "default window forgets after two minutes",
			records: []rec{{at: 0, n: 100}},
			at:      2 * time.Minute,
			draw:    0, wantP: 0, wantAllow: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Rand = fixedRand(tt.draw)
			th := budget.NewThrottle(cfg)
			for _, r := range tt.records {
				for range r.n {
					th.Record(base.Add(r.at), r.accepted)
				}
			}
			now := base.Add(tt.at)
			if p := th.Probability(now); math.Abs(p-tt.wantP) > 1e-12 {
				t.Errorf("Probability = %v, want %v", p, tt.wantP)
			}
			if got := th.Allow(now); got != tt.wantAllow {
				t.Errorf("Allow = %v, want %v", got, tt.wantAllow)
			}
		})
	}
}

func TestThrottleRejectionCountsAsRequest(t *testing.T) {
	th := budget.NewThrottle(budget.ThrottleConfig{Rand: fixedRand(0)})
	th.Record(base, false)
	if th.Allow(base) {
		t.Fatal("Allow = true with p = 1/2 and a draw of 0")
	}
	if req, acc := th.Counts(base); req != 2 || acc != 0 {
		t.Fatalf("Counts = (%d, %d), want (2, 0): the local rejection is a request", req, acc)
	}
	// Allowed requests are counted only when their outcome is recorded.
	th.Record(base, true)
	th.Record(base, true)
	if !th.Allow(base) {
		t.Fatal("Allow = false with 2 accepts of 4 requests")
	}
	if req, acc := th.Counts(base); req != 4 || acc != 2 {
		t.Fatalf("Counts = (%d, %d), want (4, 2)", req, acc)
	}
}

func TestThrottleZeroValue(t *testing.T) {
	var th budget.Throttle
	if !th.Allow(base) {
		t.Fatal("zero Throttle rejected with no history")
	}
	for range 10 {
		th.Record(base, false)
	}
	if p := th.Probability(base); math.Abs(p-10.0/11) > 1e-12 {
		t.Fatalf("Probability = %v, want 10/11", p)
	}
	if p := th.Probability(base.Add(2 * time.Minute)); p != 0 {
		t.Fatalf("Probability after the default window = %v, want 0", p)
	}
}

func TestThrottleBadK(t *testing.T) {
	for _, k := range []float64{0, -1, math.NaN()} {
		th := budget.NewThrottle(budget.ThrottleConfig{K: k})
		for range 3 {
			th.Record(base, false)
		}
		th.Record(base, true)
		// K = 2: (4 − 2) / 5.
		if p := th.Probability(base); math.Abs(p-0.4) > 1e-12 {
			t.Errorf("K=%v: Probability = %v, want 0.4 (K defaults to 2)", k, p)
		}
	}
}

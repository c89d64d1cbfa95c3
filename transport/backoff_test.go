package transport

import (
	"math"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const base, max = 100 * time.Millisecond, 10 * time.Second
	tests := []struct {
		name string
		n    int
		r    float64
		want time.Duration
	}{
		{"first retry, r=0", 1, 0, 0},
		{"first retry, r=0.5", 1, 0.5, 50 * time.Millisecond},
		{"second retry doubles", 2, 0.5, 100 * time.Millisecond},
		{"third retry", 3, 0.5, 200 * time.Millisecond},
		{"capped", 10, 0.5, 5 * time.Second},
		{"huge n does not overflow", 1000, 0.5, 5 * time.Second},
		{"n below 1 counts as 1", 0, 0.5, 50 * time.Millisecond},
		{"r=1 stays below the ceiling", 1, 1, 99999999},
		{"negative r is zero", 3, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(tt.n, base, max, tt.r); got != tt.want {
				t.Errorf("Backoff(%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

func TestBackoffNeverExceedsCap(t *testing.T) {
	for n := 1; n < 200; n++ {
		for _, r := range []float64{0, 0.3, 0.999999} {
			if d := Backoff(n, time.Second, time.Minute, r); d < 0 || d >= time.Minute {
				t.Fatalf("Backoff(%d, %v) = %v, out of [0, 1m)", n, r, d)
			}
		}
	}
	if d := Backoff(5, math.MaxInt64/2, math.MaxInt64, 0.5); d <= 0 {
		t.Fatalf("huge base: %v", d)
	}
}

func TestDecorrelatedBackoff(t *testing.T) {
	const base, max = 100 * time.Millisecond, 10 * time.Second
	tests := []struct {
		name string
		prev time.Duration
		r    float64
		want time.Duration
	}{
		{"from zero: lower bound", 0, 0, base},
		{"from zero: up to 3 base", 0, 0.5, 200 * time.Millisecond},
		{"grows from prev", time.Second, 0.5, 1550 * time.Millisecond},
		{"range clamped to the cap", 8 * time.Second, 0.9, 9010 * time.Millisecond},
		{"huge prev capped", math.MaxInt64, 0.5, 5*time.Second + 50*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DecorrelatedBackoff(tt.prev, base, max, tt.r); got != tt.want {
				t.Errorf("DecorrelatedBackoff(%v, r=%v) = %v, want %v", tt.prev, tt.r, got, tt.want)
			}
		})
	}
}

func TestHintSpread(t *testing.T) {
	tests := []struct {
		name string
		hint time.Duration
		r    float64
		want time.Duration
	}{
		{"zero hint spreads over base", 0, 0.5, 50 * time.Millisecond},
		{"short hint spreads over base", 500 * time.Millisecond, 0.5, 50 * time.Millisecond},
		{"long hint spreads over a tenth", 30 * time.Second, 0.5, 1500 * time.Millisecond},
		{"r=0 adds nothing", 30 * time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HintSpread(tt.hint, 100*time.Millisecond, tt.r); got != tt.want {
				t.Errorf("HintSpread(%v, r=%v) = %v, want %v", tt.hint, tt.r, got, tt.want)
			}
		})
	}
}

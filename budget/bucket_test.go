package budget_test

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
)

func TestTokenBucket(t *testing.T) {
	tests := []struct {
		name        string
		cfg         budget.TokenBucketConfig
		steps       []step
		at          time.Duration
		wantBalance float64
	}{
		{
			name:        "starts full",
			cfg:         budget.TokenBucketConfig{PerSecond: 2, Burst: 3},
			steps:       []step{{withdraw: 5, allowed: 3}},
			wantBalance: 0,
		},
		{
			name: "refills at the rate",
			cfg:  budget.TokenBucketConfig{PerSecond: 2, Burst: 3},
			steps: []step{
				{at: 0, withdraw: 5, allowed: 3},
				{at: 499 * time.Millisecond, withdraw: 1, allowed: 0},
				{at: 500 * time.Millisecond, withdraw: 2, allowed: 1},
				{at: 1500 * time.Millisecond, withdraw: 3, allowed: 2},
			},
			at:          1500 * time.Millisecond,
			wantBalance: 0,
		},
		{
			name: "never holds more than the burst",
			cfg:  budget.TokenBucketConfig{PerSecond: 2, Burst: 3},
			steps: []step{
				{at: 0, withdraw: 1, allowed: 1},
				{at: time.Hour, withdraw: 5, allowed: 3},
			},
			at:          time.Hour + 250*time.Millisecond,
			wantBalance: 0.5,
		},
		{
			name:        "deposits do not count",
			cfg:         budget.TokenBucketConfig{PerSecond: 1, Burst: 1},
			steps:       []step{{deposits: 100, withdraw: 3, allowed: 1}},
			wantBalance: 0,
		},
		{
			name:        "default burst is the rate rounded up",
			cfg:         budget.TokenBucketConfig{PerSecond: 2.5},
			steps:       []step{{withdraw: 10, allowed: 3}},
			wantBalance: 0,
		},
		{
			name:        "zero config: 10 per second",
			steps:       []step{{withdraw: 20, allowed: 10}},
			at:          time.Second,
			wantBalance: 10,
		},
		{
			name:        "NaN rate means the default",
			cfg:         budget.TokenBucketConfig{PerSecond: math.NaN()},
			steps:       []step{{withdraw: 20, allowed: 10}},
			wantBalance: 0,
		},
		{
			name:        "tiny rate is raised to one per hour",
			cfg:         budget.TokenBucketConfig{PerSecond: 1e-12},
			steps:       []step{{withdraw: 2, allowed: 1}, {at: time.Hour, withdraw: 2, allowed: 1}},
			at:          time.Hour,
			wantBalance: 0,
		},
		{
			name:        "huge burst does not overflow",
			cfg:         budget.TokenBucketConfig{PerSecond: 1e9, Burst: math.MaxInt},
			steps:       []step{{withdraw: 1000, allowed: 1000}},
			wantBalance: -1, // only checked to be finite and positive
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := budget.NewTokenBucket(tt.cfg)
			run(t, b, tt.steps)
			got := b.Balance(base.Add(tt.at))
			if tt.wantBalance < 0 {
				if !(got > 0) || math.IsInf(got, 0) {
					t.Errorf("Balance = %v, want finite and positive", got)
				}
				return
			}
			if math.Abs(got-tt.wantBalance) > 1e-9 {
				t.Errorf("Balance = %v, want %v", got, tt.wantBalance)
			}
		})
	}
}

func TestTokenBucketZeroValue(t *testing.T) {
	var b budget.TokenBucket
	if got := b.Balance(base); got != 10 {
		t.Fatalf("zero TokenBucket balance = %v, want 10", got)
	}
	run(t, &b, []step{{withdraw: 11, allowed: 10}, {at: 100 * time.Millisecond, withdraw: 2, allowed: 1}})
}

func TestTokenBucketConcurrentWithdrawNeverOverdraws(t *testing.T) {
	b := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1, Burst: 25})
	var (
		wg      sync.WaitGroup
		allowed atomic.Int64
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if b.Withdraw(base) {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 25 {
		t.Fatalf("%d withdrawals allowed, want exactly 25", got)
	}
}

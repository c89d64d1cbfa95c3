package budget_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
)

// base is an instant aligned on every bucket width used in these tests.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// step deposits, then tries to withdraw, at an offset from base, and
// checks how many withdrawals were allowed.
type step struct {
	at       time.Duration
	deposits int
	withdraw int
	allowed  int
}

// run plays steps on b and checks each step's allowed count.
func run(t *testing.T, b budget.Budget, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := base.Add(s.at)
		for range s.deposits {
			b.Deposit(now)
		}
		got := 0
		for range s.withdraw {
			if b.Withdraw(now) {
				got++
			}
		}
		if got != s.allowed {
			t.Fatalf("step %d at +%v: %d of %d withdrawals allowed, want %d", i, s.at, got, s.withdraw, s.allowed)
		}
	}
}

func TestRatio(t *testing.T) {
	// Ratio 0.2 over 10 s with a floor of 1/s: a reserve of 10 retries.
	cfg := budget.RatioConfig{Ratio: 0.2, Window: 10 * time.Second, MinPerSecond: 1}
	tests := []struct {
		name        string
		cfg         budget.RatioConfig
		steps       []step
		at          time.Duration
		wantBalance float64
	}{
		{
			name:  "floor only",
			cfg:   cfg,
			steps: []step{{withdraw: 15, allowed: 10}},
		},
		{
			name:        "ratio plus floor",
			cfg:         cfg,
			steps:       []step{{deposits: 50, withdraw: 30, allowed: 20}},
			wantBalance: 0,
		},
		{
			name:        "unspent balance",
			cfg:         cfg,
			steps:       []step{{deposits: 100, withdraw: 5, allowed: 5}},
			wantBalance: 25,
		},
		{
			name: "window forgets deposits and withdrawals together",
			cfg:  cfg,
			steps: []step{
				{at: 0, deposits: 50, withdraw: 20, allowed: 20},
				{at: 9999 * time.Millisecond, withdraw: 1, allowed: 0},
				{at: 10 * time.Second, withdraw: 15, allowed: 10},
			},
			at: 10 * time.Second,
		},
		{
			name: "withdrawals outlive the deposits that paid for them",
			cfg:  cfg,
			steps: []step{
				{at: 0, deposits: 50},
				{at: 5 * time.Second, withdraw: 25, allowed: 20},
				{at: 10 * time.Second, withdraw: 5, allowed: 0},
				{at: 15 * time.Second, withdraw: 5, allowed: 5},
			},
			at:          15 * time.Second,
			wantBalance: 5,
		},
		{
			name: "stale instants count in the newest bucket",
			cfg:  cfg,
			steps: []step{
				{at: 5 * time.Second, deposits: 50},
				{at: 3 * time.Second, withdraw: 25, allowed: 20},
				{at: 14500 * time.Millisecond, withdraw: 1, allowed: 0},
				{at: 15 * time.Second, withdraw: 10, allowed: 10},
			},
			at: 15 * time.Second,
		},
		{
			name:        "negative ratio: floor only",
			cfg:         budget.RatioConfig{Ratio: -1, Window: 10 * time.Second, MinPerSecond: 1},
			steps:       []step{{deposits: 1000, withdraw: 20, allowed: 10}},
			wantBalance: 0,
		},
		{
			name: "negative floor: ratio only",
			cfg:  budget.RatioConfig{Ratio: 0.2, MinPerSecond: -1},
			steps: []step{
				{withdraw: 1, allowed: 0},
				{deposits: 10, withdraw: 3, allowed: 2},
			},
		},
		{
			name:        "zero config: 20% plus 10/s over 10 s",
			steps:       []step{{deposits: 100, withdraw: 200, allowed: 120}},
			wantBalance: 0,
		},
		{
			name:        "NaN means the defaults",
			cfg:         budget.RatioConfig{Ratio: math.NaN(), MinPerSecond: math.NaN()},
			steps:       []step{{deposits: 100, withdraw: 200, allowed: 120}},
			wantBalance: 0,
		},
		{
			name:        "short window shrinks the reserve",
			cfg:         budget.RatioConfig{Ratio: 0.5, Window: time.Second, MinPerSecond: 10},
			steps:       []step{{deposits: 4, withdraw: 20, allowed: 12}},
			wantBalance: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := budget.NewRatio(tt.cfg)
			run(t, b, tt.steps)
			if got := b.Balance(base.Add(tt.at)); math.Abs(got-tt.wantBalance) > 1e-9 {
				t.Errorf("Balance = %v, want %v", got, tt.wantBalance)
			}
		})
	}
}

func TestRatioZeroValue(t *testing.T) {
	var b budget.Ratio
	if got := b.Balance(base); got != 100 {
		t.Fatalf("zero Ratio balance = %v, want 100 (10/s over 10 s)", got)
	}
	run(t, &b, []step{{deposits: 10, withdraw: 200, allowed: 102}})
}

func TestRatioInfiniteSettingsAreCapped(t *testing.T) {
	b := budget.NewRatio(budget.RatioConfig{Ratio: math.Inf(1), MinPerSecond: math.Inf(1)})
	if bal := b.Balance(base); math.IsInf(bal, 0) || math.IsNaN(bal) || bal <= 0 {
		t.Fatalf("balance = %v, want a finite positive number", bal)
	}
	if !b.Withdraw(base) {
		t.Fatal("withdraw refused with an enormous budget")
	}
}

// TestRatioConcurrentWithdrawNeverOverdraws checks that check and update
// are one step: many goroutines racing for a budget of exactly 30 retries
// get exactly 30.
func TestRatioConcurrentWithdrawNeverOverdraws(t *testing.T) {
	b := budget.NewRatio(budget.RatioConfig{Ratio: 0.2, MinPerSecond: -1})
	for range 150 {
		b.Deposit(base)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for range 100 {
				if b.Withdraw(base) {
					n++
				}
				b.Balance(base)
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if allowed != 30 {
		t.Fatalf("%d withdrawals allowed, want exactly 30", allowed)
	}
}

// TestRatioConcurrentDepositsAllCounted checks that deposits from many
// goroutines are all counted: the balance and the retries allowed are
// exactly the ratio of them.
func TestRatioConcurrentDepositsAllCounted(t *testing.T) {
	b := budget.NewRatio(budget.RatioConfig{Ratio: 0.2, MinPerSecond: -1})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				b.Deposit(base)
			}
		}()
	}
	wg.Wait()
	if got := b.Balance(base); got != 6400 {
		t.Fatalf("balance after 32,000 deposits = %v, want 6400", got)
	}
	run(t, b, []step{{withdraw: 6500, allowed: 6400}})
}

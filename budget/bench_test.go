package budget_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// fixed is a base RoundTripper that returns the same response every time,
// so that measurements see only the gate.
type fixed struct{ resp *http.Response }

func (f fixed) RoundTrip(*http.Request) (*http.Response, error) { return f.resp, nil }

func newFixed() fixed {
	return fixed{&http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}}}
}

func TestNoAllocations(t *testing.T) {
	now := time.Now()
	ratio := budget.NewRatio(budget.RatioConfig{MinPerSecond: 1e9})
	bucket := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1e9})
	th := budget.NewThrottle(budget.ThrottleConfig{})
	first, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://example.test/", nil)
	retry := first.WithContext(transport.WithAttempt(context.Background(), transport.Attempt{N: 2}))
	global := budget.NewTransport(newFixed(), budget.Config{Ratio: budget.RatioConfig{MinPerSecond: 1e9}})
	perHost := budget.NewTransport(newFixed(), budget.Config{
		PerHost: true, Ratio: budget.RatioConfig{MinPerSecond: 1e9}, Throttle: &budget.ThrottleConfig{},
	})
	perHost.RoundTrip(first) // creates the host's entry
	tests := []struct {
		name string
		f    func()
	}{
		{"Ratio.Deposit", func() { ratio.Deposit(now) }},
		{"Ratio.Withdraw", func() { ratio.Withdraw(now) }},
		{"Ratio.Balance", func() { ratio.Balance(now) }},
		{"TokenBucket.Withdraw", func() { bucket.Withdraw(now) }},
		{"Throttle.Allow", func() { th.Allow(now) }},
		{"Throttle.Record", func() { th.Record(now, true) }},
		{"gate first attempt, global", func() { global.RoundTrip(first) }},
		{"gate retry, global", func() { global.RoundTrip(retry) }},
		{"gate first attempt, per host and throttled", func() { perHost.RoundTrip(first) }},
		{"gate retry, per host and throttled", func() { perHost.RoundTrip(retry) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}

// Benchmarks pass instants that advance by 1 µs per operation, so buckets
// rotate (once per 10⁶ operations with the default window) as they would
// under real traffic.

func BenchmarkRatioDeposit(b *testing.B) {
	r := budget.NewRatio(budget.RatioConfig{})
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		r.Deposit(now.Add(time.Duration(i) * time.Microsecond))
	}
}

func BenchmarkRatioWithdraw(b *testing.B) {
	r := budget.NewRatio(budget.RatioConfig{})
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		t := now.Add(time.Duration(i) * time.Microsecond)
		r.Deposit(t) // keep some withdrawals succeeding
		r.Withdraw(t)
	}
}

func BenchmarkRatioWithdrawOnly(b *testing.B) {
	r := budget.NewRatio(budget.RatioConfig{MinPerSecond: 1e9})
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		r.Withdraw(now.Add(time.Duration(i) * time.Microsecond))
	}
}

func BenchmarkRatioDepositParallel(b *testing.B) {
	r := budget.NewRatio(budget.RatioConfig{})
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Deposit(now)
		}
	})
}

func BenchmarkRatioWithdrawParallel(b *testing.B) {
	r := budget.NewRatio(budget.RatioConfig{MinPerSecond: 1e9})
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Withdraw(now)
		}
	})
}

func BenchmarkTokenBucketWithdraw(b *testing.B) {
	tb := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1e9})
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		tb.Withdraw(now.Add(time.Duration(i) * time.Microsecond))
	}
}

func BenchmarkTokenBucketWithdrawParallel(b *testing.B) {
	tb := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1e9, Burst: 1 << 40})
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tb.Withdraw(now)
		}
	})
}

func BenchmarkThrottleAllow(b *testing.B) {
	th := budget.NewThrottle(budget.ThrottleConfig{})
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		t := now.Add(time.Duration(i) * time.Microsecond)
		th.Allow(t)
		th.Record(t, i%2 == 0)
	}
}

// gateBench measures RoundTrip of the gate in front of a base that answers
// at once, for a first attempt or a retry.
func gateBench(b *testing.B, cfg budget.Config, retry, parallel bool) {
	gate := budget.NewTransport(newFixed(), cfg)
	ctx := context.Background()
	if retry {
		ctx = transport.WithAttempt(ctx, transport.Attempt{N: 2})
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				gate.RoundTrip(req)
			}
		})
		return
	}
	for b.Loop() {
		gate.RoundTrip(req)
	}
}

var (
	roomy   = budget.RatioConfig{MinPerSecond: 1e9}
	everyOn = budget.Config{Ratio: roomy, PerHost: true, Throttle: &budget.ThrottleConfig{}}
)

func BenchmarkGateFirst(b *testing.B) { gateBench(b, budget.Config{Ratio: roomy}, false, false) }
func BenchmarkGateRetry(b *testing.B) { gateBench(b, budget.Config{Ratio: roomy}, true, false) }
func BenchmarkGateFirstPerHostThrottled(b *testing.B) {
	gateBench(b, everyOn, false, false)
}
func BenchmarkGateFirstParallel(b *testing.B) { gateBench(b, budget.Config{Ratio: roomy}, false, true) }
func BenchmarkGateFirstPerHostThrottledParallel(b *testing.B) {
	gateBench(b, everyOn, false, true)
}

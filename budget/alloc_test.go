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
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented build")
	}
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

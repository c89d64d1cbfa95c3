package budget_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// The gate sits between the retry loop and the base transport. Here the
// budget allows one retry for every two calls and has no floor: against a
// server that always fails, the first call's retry is refused (half a
// retry in the budget) and its caller receives the server's real 503; the
// second call's deposit completes a retry, which is sent.
func ExampleNewTransport() {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()

	gate := budget.NewTransport(base, budget.Config{
		Ratio: budget.RatioConfig{Ratio: 0.5, MinPerSecond: -1},
		OnRefuse: func(r budget.Refusal) {
			fmt.Printf("refused a retry (throttled: %v), balance %.1f\n", r.Throttled, r.Balance)
		},
	})
	client := &http.Client{Transport: transport.New(gate, transport.Config{MaxAttempts: 2, BaseDelay: time.Millisecond})}
	for range 2 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println("caller got", resp.StatusCode)
	}
	fmt.Println("server hits:", hits.Load())
	// Output:
	// refused a retry (throttled: false), balance 0.5
	// caller got 503
	// caller got 503
	// server hits: 3
}

// A Ratio budget on its own: first attempts deposit, retries withdraw.
func ExampleRatio() {
	b := budget.NewRatio(budget.RatioConfig{Ratio: 0.2, MinPerSecond: -1})
	now := time.Now()
	for range 10 {
		b.Deposit(now) // ten first attempts
	}
	allowed := 0
	for range 5 {
		if b.Withdraw(now) {
			allowed++
		}
	}
	fmt.Println("retries allowed:", allowed)
	fmt.Println("balance:", b.Balance(now))
	fmt.Println("balance a window later:", b.Balance(now.Add(budget.DefaultWindow)))
	// Output:
	// retries allowed: 2
	// balance: 0
	// balance a window later: 0
}

// A TokenBucket allows a fixed number of retries per second.
func ExampleTokenBucket() {
	b := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 2, Burst: 2})
	now := time.Now()
	fmt.Println(b.Withdraw(now), b.Withdraw(now), b.Withdraw(now))
	fmt.Println(b.Withdraw(now.Add(500 * time.Millisecond)))
	// Output:
	// true true false
	// true
}

// Adaptive throttling rejects first attempts locally when the server
// accepts too few of them.
func ExampleThrottle() {
	th := budget.NewThrottle(budget.ThrottleConfig{Rand: func() float64 { return 0.5 }})
	now := time.Now()
	for i := range 10 {
		th.Record(now, i == 0) // the server accepted 1 request of 10
	}
	fmt.Printf("p = %.3f\n", th.Probability(now))
	fmt.Println("allowed:", th.Allow(now))
	// Output:
	// p = 0.727
	// allowed: false
}

func ExampleRejectProbability() {
	fmt.Printf("%.3f\n", budget.RejectProbability(100, 50, 2)) // half accepted: no throttling
	fmt.Printf("%.3f\n", budget.RejectProbability(100, 10, 2))
	// Output:
	// 0.000
	// 0.792
}

// Refusals match classify.ErrNotSent, which is how the retry loop knows
// that nothing was sent.
func ExampleErrExhausted() {
	fmt.Println(errors.Is(budget.ErrExhausted, classify.ErrNotSent))
	fmt.Println(errors.Is(budget.ErrThrottled, classify.ErrNotSent))
	// Output:
	// true
	// true
}

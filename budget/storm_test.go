package budget_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// callers runs n goroutines that call client.Get(url) back to back until
// ctx ends or, when until is not zero, until that instant (the call in
// flight then is completed), and returns the number of calls and of
// successful (2xx) ones.
func callers(ctx context.Context, until time.Time, n int, client *http.Client, url string) (calls, ok int64) {
	var (
		wg        sync.WaitGroup
		all, good atomic.Int64
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && (until.IsZero() || time.Now().Before(until)) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				if ctx.Err() != nil && err != nil {
					return // the run ended during this call: not counted
				}
				all.Add(1)
				if err == nil {
					if resp.StatusCode < 300 {
						good.Add(1)
					}
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	return all.Load(), good.Load()
}

// TestStormBounded runs 20 callers for 30 virtual seconds against a base
// that always answers 503, through the retry loop and the default budget,
// and checks the retries against the budget's bound exactly:
//
//	attempts / firsts ≤ 1 + ratio + floor·seconds / firsts
//
// that is, with ratio 1/5, 5·retries ≤ firsts + 5·floor·seconds. It then
// lets the failures stop and checks that the budget recovers.
func TestStormBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			seconds = 30
			floor   = budget.DefaultMinPerSecond
		)
		s := &stub{respond: slow(status(http.StatusServiceUnavailable))}
		var refused atomic.Int64
		gate := budget.NewTransport(s, budget.Config{OnRefuse: func(budget.Refusal) { refused.Add(1) }})
		client := &http.Client{Transport: transport.New(gate, transport.Config{})}

		// Phase 1: an outage. The run's deadline ends every call by
		// then: the loop never waits past it, so no attempt is made at
		// or after 30 s, and all of them fall in three 10 s windows.
		start := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), start.Add(seconds*time.Second-time.Nanosecond))
		calls, _ := callers(ctx, time.Time{}, 20, client, "http://example.test/")
		cancel()
		firsts, retries := s.counts()
		t.Logf("outage: %d calls, %d first attempts, %d retries (%.3f attempts per call), %d refusals",
			calls, firsts, retries, float64(firsts+retries)/float64(firsts), refused.Load())
		if firsts == 0 {
			t.Fatal("no traffic")
		}
		if bound := firsts + 5*int(floor)*seconds; 5*retries > bound {
			t.Errorf("5·retries = %d > firsts + 5·floor·seconds = %d: the budget was overdrawn", 5*retries, bound)
		}
		// Without a budget the loop would make 3 retries per call; the
		// budget must also not starve retries: it should be spent.
		if min := firsts/5 + int(floor)*seconds*9/10; retries < min {
			t.Errorf("only %d retries, want at least %d: the budget was not used", retries, min)
		}
		if refused.Load() == 0 {
			t.Error("no refusals during the outage")
		}

		// Phase 2: the server recovers. After a window of healthy
		// traffic the whole budget is available again.
		s.setRespond(slow(status(http.StatusOK)))
		callers(context.Background(), time.Now().Add(10*time.Second), 20, client, "http://example.test/")
		f0, _ := s.counts()
		if bal := gate.Balance(""); bal < floor*10 {
			t.Errorf("balance after a healthy window = %v, want at least the reserve %v", bal, floor*10)
		}

		// Phase 3: every call fails once, then succeeds. Retries are
		// within the ratio, so every caller succeeds.
		var n atomic.Int64
		s.setRespond(slow(func(req *http.Request) (*http.Response, error) {
			if transport.IsRetry(req.Context()) || n.Add(1)%10 != 0 {
				return response(req, http.StatusOK), nil
			}
			return response(req, http.StatusServiceUnavailable), nil
		}))
		r0 := refused.Load()
		calls, ok := callers(context.Background(), time.Now().Add(10*time.Second), 20, client, "http://example.test/")
		f1, _ := s.counts()
		t.Logf("recovery: %d calls, %d ok, %d first attempts", calls, ok, f1-f0)
		if ok != calls || refused.Load() != r0 {
			t.Errorf("after recovery %d of %d calls succeeded with %d refusals, want all and none", ok, calls, refused.Load()-r0)
		}
	})
}

// TestThrottleSteadyState: a client offers 100 requests per second to a
// server that can accept 10 per second and refuses the rest with 503, so
// without throttling 90% of the requests would be rejected. In the SRE
// book's steady state, requests ≈ 100·W and accepts ≈ 10·W over the
// window W, so a first attempt is sent with probability
// 1 − (requests − 2·accepts)/(requests + 1) ≈ 2·10/100 = 0.2: the server
// receives twice what it can accept. The share sent after the first
// window must settle there.
func TestThrottleSteadyState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			offered  = 100 // requests per second
			capacity = 10  // accepts per second
			k        = 2.0
		)
		var (
			mu       sync.Mutex
			second   int64
			accepted int
		)
		s := &stub{respond: func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			if now := time.Now().Unix(); now != second {
				second, accepted = now, 0
			}
			if accepted < capacity {
				accepted++
				return response(req, http.StatusOK), nil
			}
			return response(req, http.StatusServiceUnavailable), nil
		}}
		rng := rand.New(rand.NewPCG(5, 6))
		gate := budget.NewTransport(s, budget.Config{Throttle: &budget.ThrottleConfig{K: k, Rand: rng.Float64}})

		send := func(d time.Duration) (calls, sent int) {
			f0, _ := s.counts()
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				resp, err := gate.RoundTrip(get("http://example.test/", false))
				if err == nil {
					resp.Body.Close()
				}
				calls++
				time.Sleep(time.Second / offered)
			}
			f1, _ := s.counts()
			return calls, f1 - f0
		}
		calls, sent := send(4 * time.Minute) // warm up: fill the window
		t.Logf("warm-up: %d of %d first attempts sent (%.3f)", sent, calls, float64(sent)/float64(calls))
		calls, sent = send(6 * time.Minute)
		share := float64(sent) / float64(calls)
		want := k * capacity / offered
		t.Logf("steady state: %d of %d first attempts sent (%.3f), formula %.3f", sent, calls, share, want)
		if math.Abs(share-want) > 0.02 {
			t.Errorf("share of first attempts sent = %.3f, want %.3f ± 0.02", share, want)
		}
	})
}

// slow makes every attempt answered by f take 5 ms of virtual time (the
// storm test runs under synctest), so that callers in a loop let time pass.
func slow(f func(*http.Request) (*http.Response, error)) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		time.Sleep(5 * time.Millisecond)
		return f(req)
	}
}

package budget_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// server is a loopback HTTP server whose handler answers fail(n) for the
// nth request (from 1) with 503, others with 200, and counts hits.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, fail func(n int64) bool) *server {
	s := new(server)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail(s.hits.Add(1)) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

// loopbackClient returns the retry loop over the budget gate over a pooled
// base, with a short backoff so that the test runs quickly (the backoff
// does not enter the budget's arithmetic), and a cleanup that closes the
// base's idle connections.
func loopbackClient(t *testing.T, cfg budget.Config) (*http.Client, *budget.Transport) {
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	gate := budget.NewTransport(base, cfg)
	loop := transport.New(gate, transport.Config{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	return &http.Client{Transport: loop}, gate
}

// hammer makes calls requests to url from workers goroutines and returns
// how many got a 2xx.
func hammer(t *testing.T, client *http.Client, url string, calls, workers int) int64 {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		ok   atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(calls) {
				resp, err := client.Get(url)
				if err != nil {
					t.Errorf("call failed with an error: %v", err)
					continue
				}
				if resp.StatusCode < 300 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	return ok.Load()
}

// TestAmplificationUnderOutage: against a real server answering 503 to
// everything, with the default budget, server hits per call stay at or
// under 1.25 (a naive 4-attempt loop makes 4). The run takes well under
// one 10 s window, so the retries are bounded by 0.2·calls plus at most
// two windows' floor (200): with 4000 calls, 1000 retries.
func TestAmplificationUnderOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("4000 loopback calls")
	}
	srv := newServer(t, func(int64) bool { return true })
	client, _ := loopbackClient(t, budget.Config{})
	const calls = 4000
	start := time.Now()
	hammer(t, client, srv.URL, calls, 16)
	if elapsed := time.Since(start); elapsed > 9*time.Second {
		t.Skipf("run took %v, longer than the bound assumes", elapsed)
	}
	hits := srv.hits.Load()
	t.Logf("%d calls, %d server hits: amplification %.3f", calls, hits, float64(hits)/calls)
	if 4*hits > 5*calls {
		t.Errorf("amplification %d/%d = %.3f > 1.25", hits, calls, float64(hits)/calls)
	}
	if hits <= calls {
		t.Errorf("%d hits for %d calls: no retry was allowed at all", hits, calls)
	}
}

// TestOrdinaryFailuresStillRetried: with 10% of requests failing at
// random, the budget (20%) covers the retries they need and callers see at
// least 99.9% success.
func TestOrdinaryFailuresStillRetried(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	srv := newServer(t, func(int64) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64() < 0.1
	})
	var refused atomic.Int64
	client, _ := loopbackClient(t, budget.Config{OnRefuse: func(budget.Refusal) { refused.Add(1) }})
	const calls = 3000
	ok := hammer(t, client, srv.URL, calls, 16)
	t.Logf("%d of %d calls succeeded, %d server hits, %d refusals", ok, calls, srv.hits.Load(), refused.Load())
	if 1000*ok < 999*calls {
		t.Errorf("%d of %d calls succeeded, want at least 99.9%%", ok, calls)
	}
}

// TestThrottleFollowsFormula: against a real server rejecting 90% of the
// requests it receives, the share of first attempts that reach it falls,
// and each attempt is sent with the probability the SRE formula gives for
// the requests and accepts seen so far: the number sent is within four
// standard deviations of the sum of those probabilities.
func TestThrottleFollowsFormula(t *testing.T) {
	srv := newServer(t, func(n int64) bool { return n%10 != 1 }) // 1st, 11th, 21st ... accepted
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	rng := rand.New(rand.NewPCG(3, 4))
	gate := budget.NewTransport(base, budget.Config{Throttle: &budget.ThrottleConfig{Rand: rng.Float64}})
	host := srv.Listener.Addr().String()

	const calls = 2000
	var (
		requests, accepts  float64 // as the test sees them
		expected, variance float64
		sentFirstHalf      int
	)
	for i := range calls {
		p := budget.RejectProbability(requests, accepts, budget.DefaultK)
		if got := gate.Probability(host); math.Abs(got-p) > 1e-9 {
			t.Fatalf("call %d: gate's probability %v, formula on observed counts %v", i, got, p)
		}
		expected += 1 - p
		variance += p * (1 - p)
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
		resp, err := gate.RoundTrip(req)
		requests++
		switch {
		case err == budget.ErrThrottled:
		case err != nil:
			t.Fatal(err)
		default:
			if resp.StatusCode == http.StatusOK {
				accepts++
			}
			resp.Body.Close()
		}
		if i == calls/2-1 {
			sentFirstHalf = int(srv.hits.Load())
		}
	}
	sent := float64(srv.hits.Load())
	sigma := math.Sqrt(variance)
	t.Logf("sent %v of %d first attempts, expected %.1f ± %.1f; first half %d, second half %v",
		sent, calls, expected, sigma, sentFirstHalf, sent-float64(sentFirstHalf))
	if math.Abs(sent-expected) > 4*sigma+1 {
		t.Errorf("sent %v, the formula expects %.1f ± %.1f", sent, expected, sigma)
	}
	if second := int(sent) - sentFirstHalf; second >= sentFirstHalf {
		t.Errorf("share sent did not fall: %d in the first half, %d in the second", sentFirstHalf, second)
	}
	if sent > calls/10 {
		t.Errorf("%v of %d first attempts sent to a server rejecting 90%%: throttling did not engage", sent, calls)
	}
}

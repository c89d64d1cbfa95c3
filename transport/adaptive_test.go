package transport_test

import (
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
)

// leakyLimiter behaves like nginx's limit_req: rate requests per second,
// burst extra, excess rejected with 429 and a fixed Retry-After.
type leakyLimiter struct {
	mu          sync.Mutex
	rate        float64
	burst       float64
	excess      float64
	last        time.Time
	retryAfter  string
	since       time.Time // count from here
	ok, limited int
}

func (l *leakyLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(2 * time.Millisecond) // a loopback round trip
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	e := l.excess
	if !l.last.IsZero() {
		e = max(0, e-l.rate*now.Sub(l.last).Seconds())
	}
	counting := !now.Before(l.since)
	if e+1 > l.burst+1 {
		if counting {
			l.limited++
		}
		h := []string{}
		if l.retryAfter != "" {
			h = append(h, "Retry-After", l.retryAfter)
		}
		return response(req, 429, "limited", h...), nil
	}
	l.excess, l.last = e+1, now
	if counting {
		l.ok++
	}
	return response(req, 200, "ok"), nil
}

func TestAdaptiveRateConvergesUnderALimiter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		burst      float64
		goodput    float64 // of the limit, at least
		throttled  float64 // share of attempts, at most
	}{
		// nginx's limit_req sends no Retry-After: the goal.
		{"no hint", "", 0, 0.9, 0.05},
		{"burst 10", "", 10, 0.9, 0.05},
		// With a Retry-After, each throttle holds the host for the
		// hint (1 s, extended by every later 429 that lands meanwhile):
		// the rate that goes out is a fraction of the limit, but still
		// several times what the default chain gets.
		{"retry-after 1", "1", 0, 0.1, 0.15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var adaptive, plain *leakyLimiter
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				adaptive = &leakyLimiter{rate: 50, burst: tc.burst, retryAfter: tc.retryAfter, since: start.Add(2 * time.Second)}
				rt := transport.New(adaptive, transport.Config{AdaptiveRate: true, MaxAttempts: 1})
				runWorkers(t, rt, 20, 10*time.Second)
			})
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				plain = &leakyLimiter{rate: 50, burst: tc.burst, retryAfter: tc.retryAfter, since: start.Add(2 * time.Second)}
				rt := transport.New(plain, transport.Config{MaxAttempts: 1})
				runWorkers(t, rt, 20, 10*time.Second)
			})
			share := func(l *leakyLimiter) float64 { return float64(l.limited) / float64(l.ok+l.limited) }
			t.Logf("after 2 s: adaptive %d ok (%.0f/s), %.1f%% throttled; default %d ok, %.1f%% throttled",
				adaptive.ok, float64(adaptive.ok)/8, 100*share(adaptive), plain.ok, 100*share(plain))
			// Goodput over the last 8 s, share of attempts throttled.
			assert.GreaterOrEqual(t, float64(adaptive.ok), tc.goodput*50*8)
			assert.LessOrEqual(t, share(adaptive), tc.throttled)
			assert.Greater(t, adaptive.ok, plain.ok*9/10, "never much worse than without")
			if tc.retryAfter != "" {
				assert.GreaterOrEqual(t, adaptive.ok, 2*plain.ok)
			}
		})
	}
}

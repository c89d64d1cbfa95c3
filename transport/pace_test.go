package transport_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quotaServer is a fixed-window rate limiter answering with the IETF
// RateLimit header: limit requests per window, 429 beyond.
type quotaServer struct {
	mu          sync.Mutex
	limit       int
	window      time.Duration
	epoch       time.Time
	cur         int64 // current window number
	used        int
	ok, limited int
	noHeaders   bool
}

func (q *quotaServer) RoundTrip(req *http.Request) (*http.Response, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	w := int64(now.Sub(q.epoch) / q.window)
	if w != q.cur {
		q.cur, q.used = w, 0
	}
	end := q.epoch.Add(time.Duration(w+1) * q.window)
	left := int((end.Sub(now) + time.Second - 1) / time.Second) // ceil seconds
	if q.used >= q.limit {
		q.limited++
		return response(req, 429, "limited", "Retry-After", strconv.Itoa(left),
			"RateLimit", `"default";r=0;t=`+strconv.Itoa(left)), nil
	}
	q.used++
	q.ok++
	if q.noHeaders {
		return response(req, 200, "ok"), nil
	}
	return response(req, 200, "ok", "RateLimit", `"default";r=`+strconv.Itoa(q.limit-q.used)+`;t=`+strconv.Itoa(left),
		"RateLimit-Policy", `"default";q=`+strconv.Itoa(q.limit)+`;w=`+strconv.Itoa(int(q.window/time.Second))), nil
}

// runWorkers runs workers closed-loop callers through rt for d.
func runWorkers(t *testing.T, rt http.RoundTripper, workers int, d time.Duration) (calls, failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := rt.RoundTrip(get(t, ctx))
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					resp.Body.Close()
				}
				cancel()
				mu.Lock()
				calls++
				if !ok {
					failed++
				}
				mu.Unlock()
				if !ok {
					time.Sleep(10 * time.Millisecond) // a failed call does not spin
				}
			}
		})
	}
	wg.Wait()
	return calls, failed
}

func TestPacingByRateLimitHeadersMeetsNo429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &quotaServer{limit: 100, window: 10 * time.Second, epoch: time.Now()}
		rt := transport.New(srv, transport.Config{})
		calls, failed := runWorkers(t, rt, 20, 60*time.Second)
		t.Logf("paced: %d calls, %d failed, server: %d ok, %d limited", calls, failed, srv.ok, srv.limited)
		assert.Zero(t, srv.limited, "a paced client meets no 429")
		assert.Zero(t, failed)
		// Goodput: the limit is 10/s over 60 s; pacing keeps ≥ 90 % of it.
		assert.GreaterOrEqual(t, srv.ok, 540)
	})
}

func TestWithoutPacingTheSameLoadMeets429s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &quotaServer{limit: 100, window: 10 * time.Second, epoch: time.Now()}
		rt := transport.New(srv, transport.Config{DisablePacing: true})
		calls, failed := runWorkers(t, rt, 20, 60*time.Second)
		t.Logf("unpaced: %d calls, %d failed, server: %d ok, %d limited", calls, failed, srv.ok, srv.limited)
		assert.Positive(t, srv.limited, "the control run must show the problem pacing solves")
	})
}

func TestPacedCallThatCannotWaitReturnsAtOnceNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &quotaServer{limit: 2, window: 10 * time.Second, epoch: time.Now()}
		rt := transport.New(srv, transport.Config{})
		// Spend the quota: the second answer says r=0.
		for range 2 {
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			resp.Body.Close()
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		resp, err := rt.RoundTrip(get(t, ctx))
		assert.Nil(t, resp)
		require.Error(t, err)
		assert.Zero(t, time.Since(start), "at once")
		var herr *transport.HoldError
		require.True(t, errors.As(err, &herr))
		assert.True(t, herr.Paced)
		assert.Contains(t, err.Error(), "paced by the server's rate-limit quota")
		assert.ErrorIs(t, err, transport.ErrHeld)
		assert.Equal(t, 0, srv.limited, "nothing was sent into the limit")
		// A call that can wait for the reset goes after it.
		resp, err = rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
		assert.GreaterOrEqual(t, time.Since(start), 10*time.Second)
	})
}

func TestSlowClientIsNeverPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &quotaServer{limit: 100, window: 10 * time.Second, epoch: time.Now()}
		rt := transport.New(srv, transport.Config{})
		for range 30 {
			start := time.Now()
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Zero(t, time.Since(start), "a client under the rate never waits")
			time.Sleep(200 * time.Millisecond) // 5/s against a 10/s quota
		}
	})
}

func TestHostileQuotaCannotStallTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Nothing left for a day: a wait over MaxRetryAfter is not imposed.
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 200, "ok", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "86400"), nil
		}}
		rt := transport.New(base, transport.Config{})
		start := time.Now()
		for range 5 {
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			resp.Body.Close()
		}
		assert.Zero(t, time.Since(start))
		assert.Equal(t, 5, base.calls())
	})
}

package transport_test

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// limiter answers 503 + Retry-After: 1 to the first request, then 200.
func limiter(code int) func(int, *http.Request) (*http.Response, error) {
	return func(n int, req *http.Request) (*http.Response, error) {
		if n == 1 {
			return response(req, code, "slow down", "Retry-After", "1"), nil
		}
		return response(req, 200, "ok"), nil
	}
}

func TestHintHoldsTheHostForOtherCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: limiter(503)}
		rt := transport.New(base, transport.Config{})
		start := time.Now()
		// The first call receives the hint and retries after it.
		first := make(chan struct{})
		go func() {
			defer close(first)
			resp, err := rt.RoundTrip(get(t, t.Context()))
			if assert.NoError(t, err) {
				assert.Equal(t, 200, resp.StatusCode)
				resp.Body.Close()
			}
		}()
		synctest.Wait() // the first call is waiting for the hold
		require.Equal(t, 1, base.calls())
		// Other calls, started during the hold, wait for it too.
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				resp, err := rt.RoundTrip(get(t, t.Context()))
				if assert.NoError(t, err) {
					assert.Equal(t, 200, resp.StatusCode)
					resp.Body.Close()
				}
			})
		}
		synctest.Wait()
		assert.Equal(t, 1, base.calls(), "no attempt goes out while the host is held")
		wg.Wait()
		<-first
		require.Equal(t, 12, base.calls())
		base.mu.Lock()
		defer base.mu.Unlock()
		var after []time.Duration
		for _, at := range base.times[1:] {
			after = append(after, at.Sub(start))
		}
		sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
		assert.GreaterOrEqual(t, after[0], time.Second, "held until the hint")
		// Spread: released over up to max(hint/10, BaseDelay) = 100 ms,
		// not in one instant. 11 uniform draws all in one millisecond has
		// odds 10^-20.
		assert.Less(t, after[len(after)-1], time.Second+100*time.Millisecond)
		assert.Greater(t, after[len(after)-1]-after[0], time.Millisecond, "held calls are spread")
	})
}

func TestHoldHintOn429AndOnAPostThatIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: limiter(503)}
		rt := transport.New(base, transport.Config{})
		// A keyless POST is not retried after a 503, but the hint still
		// holds the host.
		post, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://api.test/v1/things", nil)
		require.NoError(t, err)
		resp, err := rt.RoundTrip(post)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		resp.Body.Close()
		start := time.Now()
		resp, err = rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		assert.GreaterOrEqual(t, time.Since(start), 999*time.Millisecond)
	})
}

func TestHeldCallThatCannotWaitReturnsAtOnceNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 429, "slow down", "Retry-After", "5"), nil
		}}
		var events []transport.Event
		var mu sync.Mutex
		rt := transport.New(base, transport.Config{MaxAttempts: 1, Observer: transport.ObserverFunc(func(e transport.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		resp, err = rt.RoundTrip(get(t, ctx))
		require.Error(t, err)
		assert.Nil(t, resp)
		assert.Zero(t, time.Since(start), "returns at once")
		assert.Equal(t, 1, base.calls(), "nothing sent")
		assert.True(t, errors.Is(err, classify.ErrNotSent))
		assert.True(t, errors.Is(err, transport.ErrHeld))
		var herr *transport.HoldError
		require.True(t, errors.As(err, &herr))
		assert.Equal(t, "api.test", herr.Host)
		assert.Equal(t, start.Add(5*time.Second), herr.Until)
		var terr *transport.Error
		require.True(t, errors.As(err, &terr))
		assert.Equal(t, 0, terr.Attempts)
		assert.Equal(t, transport.StopHeld, terr.Stop)
		mu.Lock()
		last := events[len(events)-1]
		mu.Unlock()
		assert.Equal(t, transport.EventGiveUp, last.Kind)
		assert.Equal(t, transport.StopHeld, last.Stop)
	})
}

func TestRetryThatCannotWaitForTheHoldReturnsItsResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Call A receives a 2 s hint; call B, with 1 s left, got a
		// plain 503 and would retry after a short backoff, but the
		// host is held past its deadline: it returns its own 503.
		var mu sync.Mutex
		n := 0
		base := &stub{respond: func(_ int, req *http.Request) (*http.Response, error) {
			mu.Lock()
			n++
			k := n
			mu.Unlock()
			if k == 1 {
				return response(req, 503, "plain"), nil
			}
			return response(req, 503, "hinted", "Retry-After", "2"), nil
		}}
		rt := transport.New(base, transport.Config{BaseDelay: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		resp, err := rt.RoundTrip(get(t, ctx))
		require.NoError(t, err)
		// B's retry met the hint; its wait then outlasts the deadline.
		assert.Equal(t, "hinted", readBody(t, resp))
		assert.Equal(t, 2, base.calls())
		// A second call with a short deadline is refused at once.
		ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
		defer cancel2()
		_, err = rt.RoundTrip(get(t, ctx2))
		assert.ErrorIs(t, err, transport.ErrHeld)
		assert.Equal(t, 2, base.calls())
	})
}

func TestHoldIsPerHostAndPerTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if req.URL.Host == "api.test" {
				return response(req, 429, "slow down", "Retry-After", "30"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		rt := transport.New(base, transport.Config{MaxAttempts: 1})
		other := transport.New(base, transport.Config{MaxAttempts: 1})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		start := time.Now()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://other.test/", nil)
		resp, err = rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		resp, err = other.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Zero(t, time.Since(start), "another host, and another Transport, are not held")
	})
}

func TestHintOverCapHoldsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				return response(req, 503, "later", "Retry-After", "3600"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		rt := transport.New(base, transport.Config{})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode, "over the cap: the loop ends and returns the response")
		resp.Body.Close()
		start := time.Now()
		resp, err = rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
		assert.Zero(t, time.Since(start))
	})
}

func TestDisableWaitHintsHoldsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 429, "slow down", "Retry-After", "30"), nil
		}}
		rt := transport.New(base, transport.Config{MaxAttempts: 1, DisableWaitHints: true})
		for range 3 {
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			resp.Body.Close()
		}
		assert.Equal(t, 3, base.calls())
	})
}

func TestCancelWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: limiter(429)}
		rt := transport.New(base, transport.Config{MaxAttempts: 1})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			_, err := rt.RoundTrip(get(t, ctx))
			done <- err
		}()
		synctest.Wait()
		cancel()
		err = <-done
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, base.calls())
	})
}

func TestHeldCallLooksAgainWhenTheHoldIsExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The first response holds the host 1 s; a response that lands
		// during that second extends the hold to 3 s. A call waiting for
		// the first hold must not go at 1 s.
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				return response(req, 429, "slow", "Retry-After", "1"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		rt := transport.New(base, transport.Config{MaxAttempts: 1})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		start := time.Now()
		done := make(chan time.Time)
		go func() {
			resp, err := rt.RoundTrip(get(t, t.Context()))
			if assert.NoError(t, err) {
				resp.Body.Close()
			}
			done <- time.Now()
		}()
		synctest.Wait() // held
		// Half a second in, a response elsewhere extends the hold to 3 s.
		time.Sleep(500 * time.Millisecond)
		transport.HoldForTest(rt, "api.test", time.Now().Add(2500*time.Millisecond))
		sent := <-done
		assert.GreaterOrEqual(t, sent.Sub(start), 3*time.Second, "the extended hold is honoured")
		assert.Equal(t, 2, base.calls())
	})
}

func TestAQueueBuiltUpOverAHoldIsReleasedInWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: limiter(429)}
		rt := transport.New(base, transport.Config{MaxAttempts: 1})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		start := time.Now()
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				resp, err := rt.RoundTrip(get(t, t.Context()))
				if assert.NoError(t, err) {
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		base.mu.Lock()
		defer base.mu.Unlock()
		require.Len(t, base.times, 101)
		// 100 calls queued over a 1 s hold go 10 per 100 ms window
		// (releaseBatch), over about a second, not all within 100 ms.
		perWindow := map[int]int{}
		for _, at := range base.times[1:] {
			d := at.Sub(start)
			require.GreaterOrEqual(t, d, time.Second, "held until the hint")
			perWindow[int((d-time.Second)/(100*time.Millisecond))]++
		}
		for w, n := range perWindow {
			assert.LessOrEqual(t, n, 20, "window %d: at most two batches overlap", w)
		}
		last := base.times[len(base.times)-1].Sub(start)
		assert.GreaterOrEqual(t, last, time.Second+900*time.Millisecond, "the tenth batch goes in the tenth window")
		assert.Less(t, last, time.Second+1100*time.Millisecond)
	})
}

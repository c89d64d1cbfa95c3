package transport_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangOn answers every attempt in 10 ms, except those for which hang says
// the connection stalls: they never answer.
func hangOn(hang func(req *http.Request, i int) bool) *slowStub {
	return &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
		if hang(req, i) {
			return -1, 0
		}
		return 10 * time.Millisecond, 200
	}}
}

func warm(t *testing.T, rt http.RoundTripper, n int) {
	t.Helper()
	for range n {
		resp, err := rt.RoundTrip(reqTo(t, "/warm"))
		require.NoError(t, err)
		readAll(t, resp)
	}
}

// The 10 ms bucket's upper bound is 10.486 ms: three times it is the
// learned timeout of a host answering in 10 ms.
const learned10ms = 3 * 10485760 * time.Nanosecond

// After MinSamples attempts, an attempt that waits three times the host's
// p99 is cut and retried; the cut is a timeout for the loop and neutral
// for the breaker, which a host stalling half its first attempts never
// trips.
func TestLearnedTimeoutCutsAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := hangOn(func(req *http.Request, i int) bool {
			return req.URL.Path == "/stall" && !transport.AttemptFrom(req.Context()).Retry()
		})
		br := breaker.NewTransport(stub, breaker.Config{})
		var events recorder
		rt := transport.New(br, transport.Config{BaseDelay: -1, Observer: &events, LearnedTimeout: &transport.LearnedTimeoutConfig{MinTimeout: 5 * time.Millisecond}})
		warm(t, rt, 100)
		for i := range 200 {
			start := time.Now()
			resp, err := rt.RoundTrip(reqTo(t, "/stall"))
			require.NoError(t, err)
			readAll(t, resp)
			if i == 0 {
				assert.Equal(t, learned10ms+10*time.Millisecond, time.Since(start), "cut at the learned timeout, then a 10 ms retry")
				evs := events.events()
				retry := evs[len(evs)-2]
				assert.Equal(t, transport.EventRetry, retry.Kind)
				assert.ErrorIs(t, retry.Err, classify.ErrAttemptTimeout)
				assert.Equal(t, classify.ReasonTimeout, retry.Reason)
			}
		}
		settle()
		var cut int
		for _, a := range stub.attempts() {
			if a.path == "/stall" && !a.a.Retry() {
				cut++
				require.Error(t, a.cause)
				assert.NotErrorIs(t, a.cause, classify.ErrAttemptTimeout, "the base sees a cancellation, not the configured timeout")
			}
		}
		assert.Equal(t, 200, cut)
		st := br.Snapshot()[0]
		assert.Zero(t, st.Trips, "learned cuts never trip the breaker")
		assert.Equal(t, "closed", st.State.String())
	})
}

// Until the host has MinSamples attempts, Config.AttemptTimeout applies;
// afterwards it stays an upper bound; a timeout set for the call replaces
// both.
func TestLearnedTimeoutFallbacks(t *testing.T) {
	cases := map[string]struct {
		warm       int
		configured time.Duration
		perCall    time.Duration // 0: not set
		want       time.Duration // when the stalled first attempt is cut
	}{
		"too few samples: configured":  {warm: 99, configured: 500 * time.Millisecond, want: 500 * time.Millisecond},
		"learned below configured":     {warm: 100, configured: 500 * time.Millisecond, want: learned10ms},
		"configured below learned":     {warm: 100, configured: 20 * time.Millisecond, want: 20 * time.Millisecond},
		"per-call timeout wins":        {warm: 100, perCall: 70 * time.Millisecond, want: 70 * time.Millisecond},
		"learned with none configured": {warm: 100, want: learned10ms},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := hangOn(func(req *http.Request, i int) bool {
					return req.URL.Path == "/stall" && !transport.AttemptFrom(req.Context()).Retry()
				})
				rt := transport.New(stub, transport.Config{BaseDelay: -1, AttemptTimeout: c.configured, LearnedTimeout: &transport.LearnedTimeoutConfig{MinTimeout: 5 * time.Millisecond}})
				warm(t, rt, c.warm)
				req := reqTo(t, "/stall")
				if c.perCall > 0 {
					req = req.WithContext(transport.WithAttemptTimeout(context.Background(), c.perCall))
				}
				start := time.Now()
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				readAll(t, resp)
				assert.Equal(t, c.want+10*time.Millisecond, time.Since(start))
				settle()
			})
		})
	}
}

// A learned timeout never cuts an attempt that could not be retried: the
// call's last attempt, or a request not safe to repeat.
func TestLearnedTimeoutOnlyWhenRetryable(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) *http.Request{
		"last attempt": func(t *testing.T) *http.Request {
			return reqTo(t, "/stall").WithContext(transport.NoRetry(context.Background()))
		},
		"POST": func(t *testing.T) *http.Request {
			req, err := http.NewRequest(http.MethodPost, "http://api.test/stall", strings.NewReader("x"))
			require.NoError(t, err)
			return req
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := hangOn(func(req *http.Request, i int) bool { return req.URL.Path == "/stall" })
				rt := transport.New(stub, transport.Config{LearnedTimeout: &transport.LearnedTimeoutConfig{MinTimeout: 5 * time.Millisecond}})
				warm(t, rt, 100)
				ctx, cancel := context.WithTimeout(mk(t).Context(), time.Second)
				defer cancel()
				start := time.Now()
				_, err := rt.RoundTrip(mk(t).WithContext(ctx))
				require.Error(t, err)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Equal(t, time.Second, time.Since(start), "the attempt ran to the caller's deadline")
			})
		})
	}
}

// A host that becomes ten times slower raises its own learned timeout: the
// attempts cut count as at least the timeout, so after a few cuts the
// slower answers fit again and calls take one attempt.
func TestLearnedTimeoutFollowsSlowerHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := false
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if slow {
				return 100 * time.Millisecond, 200
			}
			return 10 * time.Millisecond, 200
		}}
		rt := transport.New(stub, transport.Config{BaseDelay: -1, MaxAttempts: 4, LearnedTimeout: &transport.LearnedTimeoutConfig{MinTimeout: 5 * time.Millisecond}})
		warm(t, rt, 200)
		stub.mu.Lock()
		slow = true
		stub.mu.Unlock()
		attempts := func() int {
			stub.mu.Lock()
			defer stub.mu.Unlock()
			return len(stub.seen)
		}
		var perCall []int
		for range 40 {
			before := attempts()
			resp, err := rt.RoundTrip(reqTo(t, "/x"))
			require.NoError(t, err, "every call succeeds: the last attempt is never cut")
			readAll(t, resp)
			perCall = append(perCall, attempts()-before)
		}
		t.Logf("attempts per call after the slowdown: %v", perCall)
		assert.Equal(t, 4, perCall[0], "the first slow call's first three attempts are cut")
		for i, n := range perCall[1:] {
			assert.Equal(t, 1, n, "call %d after the slowdown: the last attempt's success set the floor", 1+i)
		}
		settle()
	})
}

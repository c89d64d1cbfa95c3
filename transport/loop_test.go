package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, ctx context.Context) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/v1/things", nil)
	require.NoError(t, err)
	return req
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

func TestBackoffWaitsStayWithinFullJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 50 {
			base := &stub{respond: statuses(503)}
			rt := transport.New(base, transport.Config{})
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			readBody(t, resp)
			require.Equal(t, 4, base.calls())
			for i, gap := range base.gaps() {
				ceiling := transport.DefaultBaseDelay << i
				assert.GreaterOrEqual(t, gap, time.Duration(0))
				assert.Less(t, gap, ceiling, "wait before retry %d", i+1)
			}
		}
	})
}

func TestRetryAfterHonouredAndSpreadUpwardOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seen := map[time.Duration]bool{}
		for range 30 {
			base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
				if n == 1 {
					return response(req, 503, "busy", "Retry-After", "7"), nil
				}
				return response(req, 200, "ok"), nil
			}}
			resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			assert.Equal(t, "ok", readBody(t, resp))
			gap := base.gaps()[0]
			assert.GreaterOrEqual(t, gap, 7*time.Second, "never earlier than the server asked")
			assert.Less(t, gap, 7*time.Second+700*time.Millisecond, "spread is at most a tenth of the hint")
			seen[gap] = true
		}
		assert.Greater(t, len(seen), 1, "clients told the same value must not return in lockstep")
	})
}

func TestRetryAfterOverCapReturnsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "come back in an hour", "Retry-After", "3600"), nil
		}}
		obs := &recorder{}
		start := time.Now()
		resp, err := transport.New(base, transport.Config{Observer: obs}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "come back in an hour", readBody(t, resp))
		assert.Equal(t, 1, base.calls())
		assert.Zero(t, time.Since(start), "no wait at all")
		ev := obs.events()
		require.Len(t, ev, 2)
		assert.Equal(t, transport.StopHintOverCap, ev[1].Stop)
	})
}

func TestDeadlineShorterThanNextWaitReturnsLastResponseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy #"+itoa(n), "Retry-After", "5"), nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, ctx))
		require.NoError(t, err)
		assert.Equal(t, "busy #1", readBody(t, resp))
		assert.Equal(t, 1, base.calls())
		assert.Zero(t, time.Since(start))
	})
}

func TestDeadlineAllowsWaitsThatFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy #"+itoa(n), "Retry-After", "1"), nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, ctx))
		require.NoError(t, err)
		// Waits of 1 s to 1.1 s each: two fit before the deadline, a third
		// would end after it.
		assert.Equal(t, "busy #3", readBody(t, resp))
		assert.Equal(t, 3, base.calls())
	})
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy", "Retry-After", "30"), nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		var cancelledAt time.Time
		go func() {
			time.Sleep(3 * time.Second)
			cancelledAt = time.Now()
			cancel()
		}()
		resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, ctx))
		require.Nil(t, resp)
		require.ErrorIs(t, err, context.Canceled)
		var te *transport.Error
		require.ErrorAs(t, err, &te)
		assert.Equal(t, transport.StopCanceled, te.Stop)
		assert.Equal(t, time.Duration(0), time.Since(cancelledAt), "returns as soon as the context ends")
		assert.Equal(t, 1, base.calls())
	})
}

func TestExhaustedReturnsLastResponseAndClosesTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*trackedBody
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			r := response(req, 502, "bad gateway #"+itoa(n))
			bodies = append(bodies, r.Body.(*trackedBody))
			return r, nil
		}}
		obs := &recorder{}
		resp, err := transport.New(base, transport.Config{Observer: obs}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		require.Len(t, bodies, 4)
		for _, b := range bodies[:3] {
			assert.True(t, b.isClosed(), "discarded responses are closed")
		}
		assert.False(t, bodies[3].isClosed(), "the returned body is the caller's to close")
		assert.Equal(t, "bad gateway #4", readBody(t, resp))
		assert.Equal(t, []string{"attempt 1", "retry 1", "attempt 2", "retry 2", "attempt 3", "retry 3", "attempt 4", "give up 4"}, obs.kinds())
		assert.Equal(t, transport.StopAttempts, obs.events()[7].Stop)
		assert.Equal(t, "status 502", obs.events()[7].Reason)
	})
}

// gate refuses every attempt from the given one on, the way the budget and
// the breaker do.
type gate struct {
	next     http.RoundTripper
	from     int
	attempts []transport.Attempt
}

var errRefused = &classify.NotSentError{Msg: "gate: refused"}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	a := transport.AttemptFrom(req.Context())
	g.attempts = append(g.attempts, a)
	if a.N >= g.from {
		return nil, errRefused
	}
	return g.next.RoundTrip(req)
}

func TestGateRefusalMidLoopReturnsPreviousResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: statuses(503)}
		g := &gate{next: base, from: 3}
		resp, err := transport.New(g, transport.Config{}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err, "the caller sees the real 503, not the refusal")
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "Service Unavailable #2", readBody(t, resp), "the body was buffered before the connection was released")
		assert.Equal(t, 2, base.calls())
		require.Len(t, g.attempts, 3)
		assert.Equal(t, 1, g.attempts[0].N)
		assert.False(t, transport.IsRetry(base.reqs[0].Context()), "a first attempt carries no metadata")
		assert.Equal(t, 2, g.attempts[1].N)
		assert.True(t, transport.IsRetry(base.reqs[1].Context()))
		assert.Equal(t, g.attempts[1].Start, g.attempts[2].Start)
		assert.False(t, g.attempts[1].Start.IsZero())
	})
}

func TestGateRefusalAfterErrorReturnsThatError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errReset := &connReset{}
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, errReset }}
		_, err := transport.New(&gate{next: base, from: 2}, transport.Config{}).RoundTrip(get(t, t.Context()))
		require.ErrorIs(t, err, errReset)
		assert.NotErrorIs(t, err, classify.ErrNotSent)
		assert.Contains(t, err.Error(), "1 attempt")
	})
}

func TestGateRefusalOnFirstAttemptReturnsTheRefusal(t *testing.T) {
	base := &stub{respond: statuses(200)}
	_, err := transport.New(&gate{next: base, from: 1}, transport.Config{}).RoundTrip(get(t, t.Context()))
	require.ErrorIs(t, err, classify.ErrNotSent)
	require.ErrorIs(t, err, errRefused)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 0, te.Attempts, "a refused attempt was not sent")
	assert.Equal(t, transport.StopRefused, te.Stop)
	assert.Zero(t, base.calls())
}

// connReset is a retryable connection error for the stub to return.
type connReset struct{}

func (*connReset) Error() string { return "read tcp: connection reset by peer" }
func (*connReset) Timeout() bool { return false }
func (*connReset) Temporary() bool {
	return true
}

func TestBaseReturningResponseAndErrorIsTreatedAsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*trackedBody
		boom := errors.New("boom")
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			r := response(req, 200, "half")
			bodies = append(bodies, r.Body.(*trackedBody))
			return r, boom
		}}
		resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, t.Context()))
		assert.Nil(t, resp)
		require.ErrorIs(t, err, boom)
		assert.Contains(t, err.Error(), "4 attempts")
		for _, b := range bodies {
			assert.True(t, b.isClosed())
		}
	})
}

func TestBaseReturningNothingIsAnError(t *testing.T) {
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, nil }}
	resp, err := transport.New(base, transport.Config{MaxAttempts: 1}).RoundTrip(get(t, t.Context()))
	assert.Nil(t, resp)
	require.ErrorIs(t, err, transport.ErrNoResponse)
}

func TestNilRequest(t *testing.T) {
	resp, err := transport.New(&stub{}, transport.Config{}).RoundTrip(nil)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, transport.ErrNilRequest)
}

func TestPostWithoutKeyIsNotRetriedOn503(t *testing.T) {
	base := &stub{respond: statuses(503, 200)}
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/pay", strings.NewReader("amount=5"))
	resp, err := transport.New(base, transport.Config{}).RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	readBody(t, resp)
	assert.Equal(t, 1, base.calls())
}

func TestPostIsRetriedWhenNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				return nil, refused
			}
			return response(req, 201, "created"), nil
		}}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/pay", strings.NewReader("amount=5"))
		resp, err := transport.New(base, transport.Config{}).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, "created", readBody(t, resp))
		assert.Equal(t, 2, base.calls())
	})
}

func TestPostIsNotRetriedAfterAResetOnceSent(t *testing.T) {
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, &connReset{} }}
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/pay", strings.NewReader("amount=5"))
	_, err := transport.New(base, transport.Config{}).RoundTrip(req)
	require.Error(t, err)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 1, te.Attempts)
	assert.Equal(t, transport.StopFinal, te.Stop)
	assert.Equal(t, 1, base.calls())
}

func TestPostIsRetriedOn429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: statuses(429, 200)}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/pay", strings.NewReader("amount=5"))
		resp, err := transport.New(base, transport.Config{}).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		readBody(t, resp)
		assert.Equal(t, []string{"amount=5", "amount=5"}, base.bodies)
	})
}

func TestRecordedBodyIsReplayedByteForByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
		base := &stub{respond: statuses(503, 503, 200)}
		// A reader with no GetBody: recorded as it streams.
		req, _ := http.NewRequest(http.MethodPut, "http://api.test/blob", io.MultiReader(bytes.NewReader(payload)))
		require.Nil(t, req.GetBody)
		resp, err := transport.New(base, transport.Config{}).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		readBody(t, resp)
		require.Len(t, base.bodies, 3)
		for _, b := range base.bodies {
			assert.Equal(t, string(payload), b)
		}
		assert.NotNil(t, base.reqs[0].GetBody, "the outgoing request can be replayed by net/http too")
		assert.Nil(t, req.GetBody, "the caller's request is untouched")
	})
}

func TestUnreadableRecordedBodyIsFinal(t *testing.T) {
	// A base that, like net/http, fails the attempt with the body's error.
	var calls int
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		calls++
		if _, err := io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		return response(req, 503, ""), nil
	})
	cause := errors.New("disk on fire")
	req, _ := http.NewRequest(http.MethodPut, "http://api.test/blob", io.MultiReader(strings.NewReader("abc"), errorReader{cause}))
	_, err := transport.New(base, transport.Config{}).RoundTrip(req)
	require.ErrorIs(t, err, classify.ErrRequestBody)
	require.ErrorIs(t, err, cause)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 1, te.Attempts)
	assert.Equal(t, classify.ReasonRequestBody, te.Reason)
	assert.Equal(t, 1, calls)
}

func TestBodyOverLimitIsSentOnceAndNotRetried(t *testing.T) {
	base := &stub{respond: statuses(503, 200)}
	req, _ := http.NewRequest(http.MethodPut, "http://api.test/blob", io.MultiReader(strings.NewReader(strings.Repeat("x", 2000))))
	obs := &recorder{}
	resp, err := transport.New(base, transport.Config{MaxBodyBytes: 1000, Observer: obs}).RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	readBody(t, resp)
	require.Equal(t, 1, base.calls())
	assert.Len(t, base.bodies[0], 2000, "the whole body was sent")
	assert.Equal(t, transport.StopBodyNotReplay, obs.events()[1].Stop)
}

func TestResponseTooLargeToBufferIsReturnedWhole(t *testing.T) {
	big := strings.Repeat("e", 5000)
	base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
		return response(req, 503, big), nil
	}}
	resp, err := transport.New(base, transport.Config{MaxResponseBytes: 1024}).RoundTrip(get(t, t.Context()))
	require.NoError(t, err)
	assert.Equal(t, big, readBody(t, resp), "no byte lost")
	assert.Equal(t, 1, base.calls())
}

func TestAttemptTimeoutRetriesASlowAttemptWithoutCuttingTheBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				<-req.Context().Done() // hangs until the attempt times out
				return nil, req.Context().Err()
			}
			pr, pw := io.Pipe()
			go func() {
				pw.Write([]byte("slow "))
				time.Sleep(10 * time.Second) // longer than the attempt timeout
				pw.Write([]byte("body"))
				pw.Close()
			}()
			r := response(req, 200, "")
			r.Body = pr
			return r, nil
		}}
		rt := transport.New(base, transport.Config{AttemptTimeout: time.Second})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 2, base.calls())
		assert.Equal(t, "slow body", readBody(t, resp))
		assert.GreaterOrEqual(t, base.gaps()[0], time.Second)
	})
}

// stallingBody yields its text, then blocks until ctx ends, as a real
// connection's body does when the server stops sending: a read fails only
// when the attempt's context is cancelled.
type stallingBody struct {
	ctx  context.Context
	text *strings.Reader
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.text.Len() > 0 {
		return b.text.Read(p)
	}
	<-b.ctx.Done()
	return 0, context.Cause(b.ctx)
}

func (b *stallingBody) Close() error { return nil }

// stalling503 answers a 503 whose body stops after "partial".
func stalling503(req *http.Request) *http.Response {
	r := response(req, 503, "")
	r.Body = &stallingBody{ctx: req.Context(), text: strings.NewReader("partial")}
	return r
}

func TestAttemptTimeoutBoundsAStalledRetriedBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				return stalling503(req), nil
			}
			return response(req, 200, "ok"), nil
		}}
		rt := transport.New(base, transport.Config{AttemptTimeout: time.Second})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err, "without the bound the loop would wait on the 503's body forever")
		assert.Equal(t, "ok", readBody(t, resp))
		assert.Equal(t, 2, base.calls())
		assert.GreaterOrEqual(t, base.gaps()[0], time.Second, "the stalled body was read for one attempt timeout")
	})
}

func TestAttemptTimeoutStalledBodyKeptWhenReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The retry is refused by a gate, so the caller gets the stalled
		// 503: its status, what arrived of its body, then the timeout.
		base := &stub{respond: func(_ int, req *http.Request) (*http.Response, error) { return stalling503(req), nil }}
		rt := transport.New(&gate{next: base, from: 2}, transport.Config{AttemptTimeout: time.Second})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "partial", string(body))
		assert.ErrorIs(t, err, classify.ErrAttemptTimeout)
		assert.Equal(t, 1, base.calls())
	})
}

func TestAttemptHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: statuses(500, 200)}
		req := get(t, t.Context())
		resp, err := transport.New(base, transport.Config{AttemptHeader: "Rebound-Attempt"}).RoundTrip(req)
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, "1", base.reqs[0].Header.Get("Rebound-Attempt"))
		assert.Equal(t, "2", base.reqs[1].Header.Get("Rebound-Attempt"))
		assert.Empty(t, req.Header.Get("Rebound-Attempt"), "the caller's request is untouched")
	})
}

func TestFastPathAllocatesNothing(t *testing.T) {
	ok := &http.Response{StatusCode: 200, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return ok, nil })
	rt := transport.New(base, transport.Config{})
	getReq, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	postReq, _ := http.NewRequest(http.MethodPost, "http://api.test/", bytes.NewReader(make([]byte, 1024)))
	for name, req := range map[string]*http.Request{"GET": getReq, "POST with GetBody": postReq} {
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := rt.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
		})
		assert.Zero(t, allocs, name)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

package transport_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stops lists every stop sentinel, so a test can check that an error
// matches exactly one.
var stops = map[string]error{
	transport.StopFinal:          transport.ErrFinal,
	transport.StopAttempts:       transport.ErrAttemptsExhausted,
	transport.StopRefused:        transport.ErrRefused,
	transport.StopDeadline:       transport.ErrDeadline,
	transport.StopHintOverCap:    transport.ErrHintOverCap,
	transport.StopBodyNotReplay:  transport.ErrBodyNotReplayable,
	transport.StopResponseTooBig: transport.ErrResponseTooLarge,
	transport.StopCanceled:       transport.ErrCanceledWhileWaiting,
}

// assertStop asserts that err is an *Error that stopped with stop, sent
// attempts attempts, and matches stop's sentinel and no other.
func assertStop(t *testing.T, err error, stop string, attempts int) *transport.Error {
	t.Helper()
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, stop, te.Stop)
	assert.Equal(t, attempts, te.Attempts, "attempts sent")
	want := stops[stop]
	if stop == transport.StopHeld {
		want = transport.ErrRefused
	}
	for name, sentinel := range stops {
		assert.Equal(t, sentinel == want, errors.Is(err, sentinel), "errors.Is(err, sentinel of %q)", name)
	}
	return te
}

func refusedDial() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func TestSentinelMessagesCarryThePackagePrefix(t *testing.T) {
	for stop, sentinel := range stops {
		assert.Equal(t, "transport: "+stop, sentinel.Error())
	}
}

func TestStopAttemptsExhaustedOnErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := refusedDial()
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, refused }}
		_, err := transport.New(base, transport.Config{}).RoundTrip(get(t, t.Context()))
		assertStop(t, err, transport.StopAttempts, 4)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	})
}

func TestStopFirstAttemptRefusedByAGateSendsNothing(t *testing.T) {
	base := &stub{respond: statuses(200)}
	_, err := transport.New(&gate{next: base, from: 1}, transport.Config{}).RoundTrip(get(t, t.Context()))
	te := assertStop(t, err, transport.StopRefused, 0)
	assert.ErrorIs(t, err, errRefused)
	assert.ErrorIs(t, err, classify.ErrNotSent, "nothing was sent at all")
	assert.Equal(t, "rebound: 0 attempts, refused by gate (not sent): gate: refused", te.Error())
	assert.Zero(t, base.calls())
}

func TestStopRefusedRetryAfterAnErrorKeepsBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := refusedDial()
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, refused }}
		_, err := transport.New(&gate{next: base, from: 2}, transport.Config{}).RoundTrip(get(t, t.Context()))
		te := assertStop(t, err, transport.StopRefused, 1)
		assert.ErrorIs(t, err, errRefused, "the gate's refusal stays reachable")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "and so does the last attempt's error")
		var ne *classify.NotSentError
		require.ErrorAs(t, err, &ne)
		assert.Same(t, errRefused, ne)
		assert.Equal(t, classify.ReasonRefused, te.Reason)
		assert.Equal(t, "rebound: 1 attempt, refused by gate: gate: refused; last attempt (connection refused): "+refused.Error(), err.Error())
	})
}

func TestStopRefusedRetryAfterASentAttemptIsNotNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errReset := &connReset{}
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, errReset }}
		_, err := transport.New(&gate{next: base, from: 2}, transport.Config{}).RoundTrip(get(t, t.Context()))
		assertStop(t, err, transport.StopRefused, 1)
		assert.ErrorIs(t, err, errReset)
		assert.ErrorIs(t, err, errRefused)
		assert.NotErrorIs(t, err, classify.ErrNotSent, "the first attempt may have reached the server")
		assert.False(t, classify.NotSent(err))
	})
}

func TestStopUnknownHostIsFinalNotRefused(t *testing.T) {
	dnsErr := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}}
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, dnsErr }}
	_, err := transport.New(base, transport.Config{}).RoundTrip(get(t, t.Context()))
	te := assertStop(t, err, transport.StopFinal, 1)
	assert.Equal(t, classify.ReasonDNS, te.Reason)
	assert.NotContains(t, err.Error(), "refused")
	assert.NotErrorIs(t, err, classify.ErrNotSent, "no gate refused it")
	assert.Equal(t, 1, base.calls())
}

func TestStopDeadlineBeforeNextAttemptOnAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := refusedDial()
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, refused }}
		cfg := transport.Config{BaseDelay: time.Second, MaxDelay: time.Second, Jitter: transport.DecorrelatedJitter}
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := transport.New(base, cfg).RoundTrip(get(t, ctx))
		te := assertStop(t, err, transport.StopDeadline, 1)
		assert.True(t, te.Timeout())
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "the deadline has not passed yet")
	})
}

func TestStopCanceledWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := refusedDial()
		base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, refused }}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		cfg := transport.Config{BaseDelay: time.Second, MaxDelay: time.Second, Jitter: transport.DecorrelatedJitter}
		_, err := transport.New(base, cfg).RoundTrip(get(t, ctx))
		assertStop(t, err, transport.StopCanceled, 1)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func TestStopBodyNotReplayableOnAnError(t *testing.T) {
	errReset := &connReset{}
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, errReset }}
	req, _ := http.NewRequest(http.MethodPut, "http://api.test/blob", strings.NewReader("x"))
	req.GetBody = nil // a body that cannot be replayed, and none recorded
	_, err := transport.New(base, transport.Config{MaxBodyBytes: -1}).RoundTrip(req)
	assertStop(t, err, transport.StopBodyNotReplay, 1)
	assert.ErrorIs(t, err, errReset)
}

func TestStopFinalOnAnInvalidRequest(t *testing.T) {
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) {
		return nil, errors.New(`unsupported protocol scheme "ftp"`)
	}}
	req, _ := http.NewRequest(http.MethodGet, "ftp://api.test/", nil)
	_, err := transport.New(base, transport.Config{}).RoundTrip(req)
	assertStop(t, err, transport.StopFinal, 1)
}

func TestErrorZeroValueMatchesNoStop(t *testing.T) {
	err := &transport.Error{}
	for name, sentinel := range stops {
		assert.NotErrorIs(t, err, sentinel, name)
	}
}

func TestStopHeldRetryAfterAnErrorKeepsBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Call B's first attempt is refused at the dial; during its
		// 100 ms backoff calls A get 5 s hints (the third, with nothing
		// admitted since the first, pauses the host past B's deadline): B
		// ends with its own error and the pause.
		refused := refusedDial()
		base := &stub{respond: func(_ int, req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/a" {
				return response(req, 429, "slow down", "Retry-After", "5"), nil
			}
			return nil, refused
		}}
		rt := transport.New(base, transport.Config{BaseDelay: 100 * time.Millisecond, MaxDelay: 100 * time.Millisecond, Jitter: transport.DecorrelatedJitter})
		ctxA, cancelA := context.WithCancel(t.Context())
		doneA := make(chan struct{})
		time.AfterFunc(50*time.Millisecond, func() {
			defer close(doneA)
			var wg sync.WaitGroup
			for i := range 3 {
				time.Sleep(time.Duration(i) * 10 * time.Millisecond)
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(ctxA, http.MethodGet, "http://api.test/a", nil)
					if resp, err := rt.RoundTrip(req); err == nil {
						resp.Body.Close()
					}
				})
			}
			wg.Wait()
		})
		defer func() { cancelA(); <-doneA }()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/b", nil)
		_, err := rt.RoundTrip(req)
		te := assertStop(t, err, transport.StopHeld, 1)
		assert.ErrorIs(t, err, transport.ErrHeld)
		var herr *admission.RefusedError
		require.ErrorAs(t, err, &herr)
		assert.Equal(t, "api.test", herr.Host)
		assert.Equal(t, admission.LimitHint, herr.Limit)
		assert.ErrorIs(t, err, admission.ErrHint)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.NotErrorIs(t, err, classify.ErrNotSent, "B's first attempt went out")
		assert.Contains(t, te.Error(), "rebound: 1 attempt, no turn before the deadline: admission: api.test paused by the server's wait hint")
	})
}

// TestOverflowingHintEndsTheLoop: a wait hint too long for a Duration is
// the largest wait, over any cap: the loop returns the response at once
// instead of dropping the hint and retrying.
func TestOverflowingHintEndsTheLoop(t *testing.T) {
	for name, header := range map[string][2]string{
		"Retry-After just past a Duration": {"Retry-After", "9223372037"},
		"Retry-After overflowing int64":    {"Retry-After", "99999999999999999999"},
		"Retry-After in year 9999":         {"Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"},
		"RateLimit t overflowing":          {"RateLimit", `"default";r=0;t=99999999999999999999`},
		"RateLimit-Reset overflowing":      {"RateLimit-Reset", "9223372037"},
		"X-RateLimit-Reset overflowing":    {"X-RateLimit-Reset", "99999999999999999999"},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &stub{respond: func(_ int, req *http.Request) (*http.Response, error) {
					return response(req, 503, "come back much later", header[0], header[1]), nil
				}}
				start := time.Now()
				resp, err := transport.New(base, transport.Config{}).RoundTrip(get(t, t.Context()))
				require.NoError(t, err)
				assert.Equal(t, "come back much later", readBody(t, resp))
				assert.Equal(t, 1, base.calls(), "not retried")
				assert.Zero(t, time.Since(start))
				_, stop, ok := transport.Outcome(resp)
				require.True(t, ok)
				assert.ErrorIs(t, stop, transport.ErrHintOverCap)
			})
		})
	}
}

// The zero Transport fails every request with a clear error, unsent; it
// never panics.
func TestZeroTransportFailsClearly(t *testing.T) {
	var rt transport.Transport
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	var resp *http.Response
	var err error
	require.NotPanics(t, func() { resp, err = rt.RoundTrip(req) })
	assert.Nil(t, resp)
	require.ErrorIs(t, err, transport.ErrZeroTransport)
	assert.Contains(t, err.Error(), "create it with transport.New")
}

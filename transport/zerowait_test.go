package transport_test

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A negative BaseDelay turns backoff off, for both jitters: every retry
// follows its failure at once (in virtual time, no time passes).
func TestNegativeBaseDelayRetriesAtOnce(t *testing.T) {
	for _, jitter := range []transport.Jitter{transport.FullJitter, transport.DecorrelatedJitter} {
		synctest.Test(t, func(t *testing.T) {
			base := &stub{respond: statuses(503)}
			rt := transport.New(base, transport.Config{BaseDelay: -1, Jitter: jitter})
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			readBody(t, resp)
			require.Equal(t, transport.DefaultMaxAttempts, base.calls())
			for i, gap := range base.gaps() {
				assert.Zero(t, gap, "jitter %d: wait before retry %d", jitter, i+1)
			}
		})
	}
}

// A negative MaxRetryAfter accepts no wait: a hint of one second ends the
// loop with the hinted response, while a hint of zero is retried at once.
func TestNegativeMaxRetryAfterAcceptsNoWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy", "Retry-After", "1"), nil
		}}
		rt := transport.New(base, transport.Config{MaxRetryAfter: -1})
		start := time.Now()
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, 1, base.calls())
		assert.Zero(t, time.Since(start))
		n, stop, ok := transport.Outcome(resp)
		require.True(t, ok)
		assert.Equal(t, 1, n)
		assert.ErrorIs(t, stop, transport.ErrHintOverCap)

		zero := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				return response(req, 503, "busy", "Retry-After", "0"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		resp, err = transport.New(zero, transport.Config{MaxRetryAfter: -1}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 2, zero.calls())
	})
}

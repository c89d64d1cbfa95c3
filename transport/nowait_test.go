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

// With NoWait, backoff and the server's hints are waited for zero time,
// while the decisions stay: the hinted retry still reads as the server's,
// and a hint over the cap still ends the loop.
func TestNoWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			switch n {
			case 1:
				return response(req, 503, "busy", "Retry-After", "5"), nil
			case 2:
				return response(req, 502, "bad gateway"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		obs := &recorder{}
		rt := transport.New(base, transport.Config{NoWait: true, BaseDelay: time.Hour, MaxDelay: time.Hour, Observer: obs})
		start := time.Now()
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, "ok", readBody(t, resp))
		assert.Zero(t, time.Since(start))
		assert.Equal(t, 3, base.calls())
		var retries []transport.Event
		for _, e := range obs.events() {
			if e.Kind == transport.EventRetry {
				retries = append(retries, e)
			}
		}
		require.Len(t, retries, 2)
		assert.True(t, retries[0].FromServer)
		assert.False(t, retries[1].FromServer)
		for _, e := range retries {
			assert.Zero(t, e.Delay)
		}

		over := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy", "Retry-After", "3600"), nil
		}}
		resp, err = transport.New(over, transport.Config{NoWait: true}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, 1, over.calls())
		_, stop, _ := transport.Outcome(resp)
		assert.ErrorIs(t, stop, transport.ErrHintOverCap)
	})
}

// With NoWait a hint holds no host: the next call goes out at once. Without
// it, the same call waits for the pause (three throttles with nothing
// admitted: one is not a pattern, and a young key's two may be a burst's).
func TestNoWaitHoldsNoHost(t *testing.T) {
	for _, noWait := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
				if n <= 3 {
					return response(req, 429, "slow down", "Retry-After", "30"), nil
				}
				return response(req, 200, "ok"), nil
			}}
			rt := transport.New(base, transport.Config{NoWait: noWait, MaxAttempts: 1})
			for range 3 {
				resp, err := rt.RoundTrip(get(t, t.Context()))
				require.NoError(t, err)
				readBody(t, resp)
			}
			start := time.Now()
			resp, err := rt.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			assert.Equal(t, "ok", readBody(t, resp))
			if noWait {
				assert.Zero(t, time.Since(start))
			} else {
				assert.GreaterOrEqual(t, time.Since(start), 30*time.Second)
			}
		})
	}
}

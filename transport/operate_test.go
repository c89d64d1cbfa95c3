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

// Reconfigure keeps the admission states when the settings that shape
// them are the same, and the learned latencies when both configurations
// learn them; Reset forgets both for one host.
func TestReconfigureKeepsWhatStillApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			time.Sleep(10 * time.Millisecond)
			if n <= 3 {
				return response(req, 429, "slow down", "Retry-After", "30"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		cfg := transport.Config{MaxAttempts: 1, LearnedTimeout: &transport.LearnedTimeoutConfig{}}
		old := transport.New(base, cfg)
		for range 3 {
			resp, err := old.RoundTrip(get(t, t.Context()))
			require.NoError(t, err)
			resp.Body.Close()
		}
		require.NotEmpty(t, old.Admission(), "the host is throttled")
		lat := old.Latencies()
		require.Len(t, lat, 1)
		assert.EqualValues(t, 3, lat[0].Samples)
		assert.Equal(t, "api.test", lat[0].Host)

		cfg.MaxAttempts = 2
		same, kept := old.Reconfigure(nil, cfg)
		assert.Equal(t, transport.Kept{Admission: true, Latency: true}, kept)
		assert.Equal(t, old.Admission(), same.Admission())
		assert.Equal(t, old.Latencies(), same.Latencies())

		cfg.MaxRetryAfter = 2 * time.Minute
		cfg.LearnedTimeout = nil
		other, kept := old.Reconfigure(nil, cfg)
		assert.Equal(t, transport.Kept{}, kept)
		assert.Empty(t, other.Admission())
		assert.Nil(t, other.Latencies())

		keys, latency := same.Reset("API.test")
		assert.Equal(t, 1, keys)
		assert.True(t, latency)
		assert.Empty(t, same.Latencies())
		keys, latency = same.Reset("other.test")
		assert.Zero(t, keys)
		assert.False(t, latency)
	})
}

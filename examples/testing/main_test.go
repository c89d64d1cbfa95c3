package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// In a synctest bubble, against a Script: the server's Retry-After of 1 s
// is honoured (virtual time: the test takes no real time, and the timing
// is exact enough to assert), and every body is closed.
func TestLatestHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"quotes.example": {
				{Status: 429, Header: http.Header{"Retry-After": {"1"}}},
				{Body: `{"symbol":"RBND","price":42.5}`},
			},
		}}
		q := newQuotes("https://quotes.example", script)
		start := time.Now()
		quote, err := q.latest(t.Context(), "RBND")
		require.NoError(t, err)
		assert.Equal(t, Quote{Symbol: "RBND", Price: 42.5}, quote)
		assert.GreaterOrEqual(t, time.Since(start), time.Second)
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.Equal(t, 2, script.Count("quotes.example"))
		assert.Zero(t, script.Open())
	})
}

// A service that never answers: latest gives up at its own 2 s deadline,
// with a timeout error, after the attempts that fit.
func TestLatestGivesUpAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := &reboundtest.Script{Then: &reboundtest.Step{Delay: time.Hour}}
		q := newQuotes("https://quotes.example", script)
		start := time.Now()
		_, err := q.latest(t.Context(), "RBND")
		require.Error(t, err)
		assert.True(t, os.IsTimeout(err), "%v", err)
		assert.Equal(t, 2*time.Second, time.Since(start))
	})
}

// A POST whose connection resets after it was written is not repeated
// (the service may have run it); one refused at the dial is.
func TestAlertRepeatedOnlyWhenSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"quotes.example": {{Err: reboundtest.ErrReset}, {Err: reboundtest.ErrRefused}, {Status: 201}},
		}}
		q := newQuotes("https://quotes.example", script)
		require.Error(t, q.alert(t.Context(), "RBND", 50))
		assert.Equal(t, 1, script.Count("quotes.example"))
		require.NoError(t, q.alert(t.Context(), "RBND", 50))
		assert.Equal(t, 2, script.Count("quotes.example"), "the refused attempt never reached it")
		calls := script.Calls()
		require.Len(t, calls, 3)
		assert.Equal(t, `{"symbol":"RBND","above":50}`, string(calls[2].Body))
	})
}

// Against a real local server (outside a bubble, where network I/O works),
// NoWait keeps the chain's decisions and drops its waits: the Retry-After
// of 30 s costs nothing, and a policy file's host policy is reached too.
func TestLatestRealServerNoWait(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"symbol":"RBND","price":1}`))
	}))
	defer srv.Close()
	opts, err := rebound.ParsePolicyFile([]byte(`{"hosts": {"127.0.0.1": {"max_attempts": 2, "max_retry_after": "1m"}}}`))
	require.NoError(t, err)
	q := newQuotes(srv.URL, nil, append(opts, reboundtest.NoWait())...)
	defer q.client.CloseIdleConnections()
	quote, err := q.latest(t.Context(), "RBND")
	require.NoError(t, err)
	assert.Equal(t, 1.0, quote.Price)
	assert.EqualValues(t, 2, hits.Load())
}

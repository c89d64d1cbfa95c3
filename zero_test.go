package rebound_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// &rebound.Transport{} is the default chain, as documented: it retries a
// 503 against a real server (once, to keep the real backoff short: the
// zero value takes no NoWait), counts, reports its breakers and policy,
// even when its first uses are concurrent.
func TestZeroTransportIsTheDefaultChain(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	rt := &rebound.Transport{}
	defer rt.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 4 { // the first uses race to build the chain
		wg.Go(func() {
			_, p := rt.PolicyFor("api.example.com")
			assert.Equal(t, transport.DefaultMaxAttempts, p.Retry.MaxAttempts)
			_ = rt.Breakers()
			_ = rt.Stats()
		})
	}
	wg.Wait()
	client := &http.Client{Transport: rt}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a 503, then the retry's 200")
	assert.EqualValues(t, 2, hits.Load())
	s := rt.Stats()
	assert.EqualValues(t, 1, s.Total.Calls)
	assert.EqualValues(t, 2, s.Total.Attempts)
	require.Len(t, rt.Breakers(), 1)
	_, ok := rt.RetryBalance(rt.Breakers()[0].Host)
	assert.True(t, ok, "the default chain has a budget")
}

// The zero values of the gates: the breaker's works (a closed breaker
// over a pooled transport); the budget's, which has no budget to spend,
// fails every request unsent with an error that says how to make one.
func TestZeroGates(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	br := &breaker.Transport{}
	defer br.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := br.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()

	var bt budget.Transport
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := bt.RoundTrip(req)
		assert.Nil(t, resp)
		require.EqualError(t, err, "budget: Transport has no budget: create it with budget.NewTransport")
	}
	bt.CloseIdleConnections()
}

package rebound_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound"
)

// stackOf3 starts C (every request answered 503), B (calls C) and A (calls
// B), each middle layer with its own rebound client and, when layered,
// wrapped in rebound.Layer; it returns A's URL and the requests each
// server received.
func stackOf3(t *testing.T, layered bool) (url string, a, b, c *atomic.Int64) {
	t.Helper()
	a, b, c = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	srvC := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srvC.Close)
	middle := func(count *atomic.Int64, below string) *httptest.Server {
		rt := rebound.NewTransport(nil)
		t.Cleanup(rt.CloseIdleConnections)
		client := &http.Client{Transport: rt}
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			count.Add(1)
			req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, below, nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				http.Error(w, "below: "+err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode >= 500 {
				http.Error(w, "below: "+resp.Status, http.StatusBadGateway)
				return
			}
			w.Write([]byte("ok"))
		})
		if layered {
			h = rebound.Layer(h)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	srvB := middle(b, srvC.URL)
	srvA := middle(a, srvB.URL)
	return srvA.URL, a, b, c
}

// Three layers of rebound clients in front of a failing service retry
// once, at the layer nearest to it, when the middle layers are wrapped in
// Layer: every call reaches A and B once and C at most four times (one
// rebound chain's attempts). Without Layer every layer retries the
// failure of the one below, as far as the budgets and breakers allow (3
// calls reached A 10 times and B 10 times; B's breaker, open after ten
// failures, kept C at 10).
func TestLayerStopsRetriesMultiplying(t *testing.T) {
	const calls = 3
	for _, layered := range []bool{true, false} {
		url, a, b, c := stackOf3(t, layered)
		rt := rebound.NewTransport(nil)
		client := &http.Client{Transport: rt}
		for range calls {
			resp, err := client.Get(url)
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
			if layered {
				assert.Equal(t, "false", resp.Header.Get("X-Should-Retry"), "A says its own calls were retried")
			} else {
				assert.Empty(t, resp.Header.Get("X-Should-Retry"))
			}
		}
		rt.CloseIdleConnections()
		t.Logf("layered %v: %d calls reached A %d, B %d, C %d times", layered, calls, a.Load(), b.Load(), c.Load())
		if layered {
			assert.EqualValues(t, calls, a.Load(), "the client did not retry A")
			assert.EqualValues(t, calls, b.Load(), "A did not retry B")
			assert.LessOrEqual(t, c.Load(), int64(4*calls), "B retried C, once per call")
			assert.Greater(t, c.Load(), int64(calls), "B did retry C")
		} else {
			// B's breaker toward C trips after ten failures and shields C;
			// the middle layers take the multiplied retries.
			assert.Greater(t, a.Load(), int64(calls), "without Layer the client retries A")
			assert.Greater(t, b.Load(), a.Load()-1, "and A retries B")
			assert.Greater(t, b.Load(), int64(calls))
		}
	}
}

// Layer leaves alone a failure its handler writes without a call below
// that spent its retries, and every success.
func TestLayerMarksOnlyFailuresAfterSpentRetries(t *testing.T) {
	h := rebound.Layer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			http.Error(w, "no", http.StatusInternalServerError)
		default:
			w.Write([]byte("ok"))
		}
	}))
	for _, path := range []string{"/fail", "/ok"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Empty(t, rec.Header().Get("X-Should-Retry"), path)
	}
	// A nil handler serves with http.DefaultServeMux, as http.Server does.
	rec := httptest.NewRecorder()
	rebound.Layer(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/no-such-path-registered", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

// What Layer costs a request: the mark, its context, the request's
// shallow copy that carries it and the writer's wrapper.
func TestLayerAllocations(t *testing.T) {
	h := rebound.Layer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	assert.LessOrEqual(t, testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }), 4.0)
}

package rebound_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
)

// QUERY (RFC 10008) is safe and idempotent: after the server read the
// request and dropped the connection (it may have run it), the chain
// sends it again, body and all, as it would a GET, and never a POST.
func TestQueryRetriedAfterAmbiguousFailure(t *testing.T) {
	for _, tc := range []struct {
		method   string
		attempts int
	}{
		{classify.MethodQuery, 2},
		{http.MethodPost, 1},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var mu sync.Mutex
			var bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, r.Method+" "+string(b))
				n := len(bodies)
				mu.Unlock()
				if n == 1 { // read, then drop the connection unanswered
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				io.WriteString(w, "rows")
			}))
			defer srv.Close()
			client := rebound.NewClient(reboundtest.NoWait(), rebound.WithPolicy(rebound.Policy{DisableIdempotencyKeys: true}))
			defer client.CloseIdleConnections()

			req, err := http.NewRequest(tc.method, srv.URL+"/v1/search", strings.NewReader(`{"where":"x"}`))
			require.NoError(t, err)
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, bodies, tc.attempts)
			for _, b := range bodies {
				assert.Equal(t, tc.method+` {"where":"x"}`, b)
			}
			if tc.attempts == 1 {
				require.Error(t, err, "a POST the server may have run is not repeated")
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			assert.Equal(t, "rows", string(got))
		})
	}
}

// A QUERY that has not answered after the hedge delay is hedged, as a GET
// would be.
func TestQueryHedged(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits++
		n := hits
		mu.Unlock()
		if n == 1 {
			select { // the first attempt hangs until the test ends
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "rows")
	}))
	defer srv.Close()
	defer close(release)
	client := rebound.NewClient(rebound.WithPolicy(rebound.Policy{
		Retry: transport.Config{Hedge: &transport.HedgeConfig{Delay: 20 * time.Millisecond}},
	}))
	defer client.CloseIdleConnections()

	// Without a hedge the call would wait for the hung first attempt:
	// the deadline ends it then, and the test fails.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, classify.MethodQuery, srv.URL+"/v1/search", strings.NewReader(`{"where":"x"}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "rows", string(got))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 2, hits, "the first attempt and its hedge")
}

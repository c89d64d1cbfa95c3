package idempotency_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRetryEventSaysWhoseKey: through the client link and the retry loop,
// toward a real server that answers each call's first attempt 503, the
// retry event of a POST says whether the caller's key or a key the link
// generated (toward a host declared to honour keys) licensed it.
func TestRetryEventSaysWhoseKey(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name   string
		header string // the caller's key, set on the request
		ctxKey string // the caller's key, given with WithKey
		why    string
	}{
		{name: "generated", why: transport.WhyGeneratedKey},
		{name: "caller's header", header: "caller-1", why: transport.WhyCallerKey},
		{name: "caller's WithKey", ctxKey: "caller-2", why: transport.WhyCallerKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var whys []string
			obs := transport.ObserverFunc(func(e transport.Event) {
				if e.Kind == transport.EventRetry {
					mu.Lock()
					whys = append(whys, e.Why)
					mu.Unlock()
				}
			})
			loop := transport.New(srv.Client().Transport, transport.Config{NoWait: true, Observer: obs})
			client := &http.Client{Transport: idempotency.NewTransport(loop, idempotency.Config{KeysHonored: true})}
			ctx := t.Context()
			if tc.ctxKey != "" {
				ctx = idempotency.WithKey(ctx, tc.ctxKey)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("charge"))
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("Idempotency-Key", tc.header)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusCreated, resp.StatusCode)
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []string{tc.why}, whys)
		})
	}
}

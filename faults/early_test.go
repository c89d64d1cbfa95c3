package faults

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// retryAtOnce is a chain that ignores wait hints: it repeats a refused
// request at once, up to attempts in all.
type retryAtOnce struct {
	next     http.RoundTripper
	attempts int
}

func (r retryAtOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	for i := 1; ; i++ {
		resp, err := r.next.RoundTrip(req)
		if err != nil || resp.StatusCode == http.StatusOK || i == r.attempts {
			return resp, err
		}
		resp.Body.Close()
	}
}

// TestEarlyAttemptsPerCall checks the suite's own early-attempt count
// (attemptCounter, callHints): an attempt is early only when its own call
// received a wait hint that has not ended, from Retry-After or from a
// RateLimit with r=0; a call that received none goes when it likes, even
// while another call's hint runs.
func TestEarlyAttemptsPerCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		value  string
	}{
		{"Retry-After", "Retry-After", "1"},
		{"RateLimit r=0", "RateLimit", `"fixed";r=0;t=2`},
		{"RateLimit r=3 is no hint", "RateLimit", `"fixed";r=3;t=2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Refuse") != "" && served.Add(1)%2 == 1 {
					w.Header().Set(tc.header, tc.value)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.Write([]byte("ok"))
			}))
			defer srv.Close()
			c := newClient(plainID, "retry at once", func(_ *client, base http.RoundTripper) http.RoundTripper {
				return retryAtOnce{next: base, attempts: 2}
			})
			defer c.base.CloseIdleConnections()
			l := load{timeout: 5 * time.Second, method: http.MethodGet}
			// A call that is refused and retried at once: one early attempt
			// when the refusal carried a hint.
			c.http.Transport = headerSetter{c.http.Transport, "X-Refuse"}
			if !c.call(context.Background(), srv.URL, l, "a") {
				t.Fatalf("the retried call failed: %s", c.topFailures(3))
			}
			want := int64(1)
			if tc.name == "RateLimit r=3 is no hint" {
				want = 0
			}
			if n, _ := c.earlyAttempts(); n != want {
				t.Fatalf("%d early attempts after a call retried at once, want %d", n, want)
			}
			// Another call, at once, while the first call's hint runs: not
			// early, the hint was not its own.
			c.http.Transport = c.http.Transport.(headerSetter).next
			if !c.call(context.Background(), srv.URL, l, "b") {
				t.Fatalf("the second call failed: %s", c.topFailures(3))
			}
			if n, _ := c.earlyAttempts(); n != want {
				t.Fatalf("%d early attempts after another call went during the first one's hint, want %d", n, want)
			}
		})
	}
}

// headerSetter sets a header on every request it passes on.
type headerSetter struct {
	next   http.RoundTripper
	header string
}

func (h headerSetter) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(h.header, "1")
	return h.next.RoundTrip(req)
}

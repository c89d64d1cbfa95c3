package reboundtest_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// busy answers 503 with Retry-After: 3 once, then 503 without a hint
// (backoff) forever.
func busy() []reboundtest.Step {
	return []reboundtest.Step{{Status: 503, Header: http.Header{"Retry-After": {"3"}}}}
}

// NoWait reaches the default policy and every host policy of a policy
// file, given before or after it, while each policy's decisions (its
// attempts, its cap on the server's wait) stay: in virtual time, no time
// passes with it and the same attempts are made as without it.
func TestNoWaitReachesEveryPolicy(t *testing.T) {
	fileOpts, err := rebound.LoadPolicyFile("testdata/policies.json")
	require.NoError(t, err)
	hosts := []struct {
		url      string
		attempts int
	}{
		{"http://default.test/", 3},
		{"http://a.test/", 2},
		{"http://b.test/", 5},
		{"http://x.c.test/", 4},
	}
	for _, c := range []struct {
		name string
		opts func() []rebound.Option
		wait bool
		def  int // attempts of the default policy
	}{
		{"without", func() []rebound.Option { return fileOpts }, true, 3},
		{"after the file", func() []rebound.Option { return append(append([]rebound.Option{}, fileOpts...), reboundtest.NoWait()) }, false, 3},
		{"before the file", func() []rebound.Option {
			return append([]rebound.Option{reboundtest.NoWait()}, fileOpts...)
		}, false, 3},
		{"a later WithRetry", func() []rebound.Option {
			return append(append([]rebound.Option{reboundtest.NoWait()}, fileOpts...), rebound.WithRetry(transport.Config{BaseDelay: time.Minute}))
		}, false, transport.DefaultMaxAttempts}, // WithRetry replaces the file's default Retry
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				steps := map[string][]reboundtest.Step{}
				for _, h := range hosts {
					steps[h.url[len("http://"):len(h.url)-1]] = busy()
				}
				s := &reboundtest.Script{Hosts: steps, Then: &reboundtest.Step{Status: 503}}
				rt, err := rebound.New(s, c.opts()...)
				require.NoError(t, err)
				for _, h := range hosts {
					start := time.Now()
					resp, err := do(t, rt, t.Context(), "GET", h.url, "")
					require.NoError(t, err)
					read(t, resp)
					n, _, _ := transport.Outcome(resp)
					want := h.attempts
					if h.url == "http://default.test/" {
						want = c.def
					}
					assert.Equal(t, want, n, h.url)
					if c.wait {
						assert.GreaterOrEqual(t, time.Since(start), 3*time.Second, h.url)
					} else {
						assert.Zero(t, time.Since(start), h.url)
					}
				}
				for _, host := range []string{"default.test", "a.test", "b.test", "x.c.test"} {
					_, p := rt.PolicyFor(host)
					assert.Equal(t, !c.wait, p.Retry.NoWait, host)
				}
			})
		})
	}
}

// Against a real server outside a bubble: with NoWait, the server's
// Retry-After of 30 s and a 10 s backoff are waited for zero time, and the
// observer says so.
func TestNoWaitRealServer(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	var (
		mu     sync.Mutex
		delays []time.Duration
		server []bool
	)
	obs := rebound.Observer{Retry: func(e transport.Event) {
		if e.Kind == transport.EventRetry {
			mu.Lock()
			delays, server = append(delays, e.Delay), append(server, e.FromServer)
			mu.Unlock()
		}
	}}
	rt := rebound.NewTransport(nil,
		rebound.WithRetry(transport.Config{BaseDelay: 10 * time.Second, MaxDelay: 10 * time.Second}),
		rebound.WithObserver(obs), reboundtest.NoWait())
	defer rt.CloseIdleConnections()
	resp, err := do(t, rt, t.Context(), "GET", srv.URL, "")
	require.NoError(t, err)
	assert.Equal(t, "ok", read(t, resp))
	assert.EqualValues(t, 3, hits.Load())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []time.Duration{0, 0}, delays)
	assert.Equal(t, []bool{true, false}, server)
}

package transport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutcomeTellsWhyTheLoopStopped: for every way the loop can hand back
// a response, Outcome reports the attempts sent and the stop, with no
// observer.
func TestOutcomeTellsWhyTheLoopStopped(t *testing.T) {
	hinted := func(v string) func(int, *http.Request) (*http.Response, error) {
		return func(_ int, req *http.Request) (*http.Response, error) {
			return response(req, 503, "busy", "Retry-After", v), nil
		}
	}
	cases := []struct {
		name     string
		respond  func(int, *http.Request) (*http.Response, error)
		cfg      transport.Config
		gateFrom int // 0: no gate
		timeout  time.Duration
		req      func() *http.Request
		attempts int
		stop     error // nil: success after retries
	}{
		{name: "attempts exhausted", respond: statuses(503), attempts: 4, stop: transport.ErrAttemptsExhausted},
		{name: "retries disabled", respond: statuses(503), cfg: transport.Config{MaxAttempts: 1}, attempts: 1, stop: transport.ErrAttemptsExhausted},
		{name: "success after retries", respond: statuses(503, 502, 200), attempts: 3},
		{name: "final status after a retry", respond: statuses(503, 404), attempts: 2, stop: transport.ErrFinal},
		{name: "server wait over the cap", respond: hinted("3600"), attempts: 1, stop: transport.ErrHintOverCap},
		{name: "deadline before the next attempt", respond: hinted("5"), timeout: 2 * time.Second, attempts: 1, stop: transport.ErrDeadline},
		{name: "refused by a gate", respond: statuses(503), gateFrom: 3, attempts: 2, stop: transport.ErrRefused},
		{name: "body not replayable", respond: statuses(503), cfg: transport.Config{MaxBodyBytes: -1}, req: func() *http.Request {
			req, _ := http.NewRequest(http.MethodPut, "http://api.test/blob", io.MultiReader(strings.NewReader("x")))
			return req
		}, attempts: 1, stop: transport.ErrBodyNotReplayable},
		{name: "response too large to buffer", respond: func(_ int, req *http.Request) (*http.Response, error) {
			return response(req, 503, strings.Repeat("x", 100)), nil
		}, cfg: transport.Config{MaxResponseBytes: 10}, attempts: 1, stop: transport.ErrResponseTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var next http.RoundTripper = &stub{respond: c.respond}
				if c.gateFrom > 0 {
					next = &gate{next: next, from: c.gateFrom}
				}
				ctx := t.Context()
				if c.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.timeout)
					defer cancel()
				}
				req := get(t, ctx)
				if c.req != nil {
					req = c.req().WithContext(ctx)
				}
				resp, err := transport.New(next, c.cfg).RoundTrip(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				attempts, stop, ok := transport.Outcome(resp)
				require.True(t, ok)
				assert.Equal(t, c.attempts, attempts)
				if c.stop == nil {
					assert.NoError(t, stop)
					return
				}
				assert.ErrorIs(t, stop, c.stop)
				for name, sentinel := range stops {
					if sentinel != c.stop {
						assert.NotErrorIs(t, stop, sentinel, name)
					}
				}
			})
		})
	}
}

func TestOutcomeOfARefusalReachesTheGatesError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resp, err := transport.New(&gate{next: &stub{respond: statuses(503)}, from: 2}, transport.Config{}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		defer resp.Body.Close()
		_, stop, ok := transport.Outcome(resp)
		require.True(t, ok)
		assert.ErrorIs(t, stop, errRefused)
		var ne *classify.NotSentError
		require.ErrorAs(t, stop, &ne)
		assert.NotErrorIs(t, stop, classify.ErrNotSent, "the response itself was sent")
		assert.Equal(t, "transport: refused by gate: gate: refused", stop.Error())
	})
}

func TestOutcomeOfAFirstAttemptIsNotRecorded(t *testing.T) {
	for _, code := range []int{200, 204, 301, 404, 501} {
		resp, err := transport.New(&stub{respond: statuses(code)}, transport.Config{}).RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		_, _, ok := transport.Outcome(resp)
		assert.False(t, ok, "status %d: handed back as it came", code)
	}
	_, _, ok := transport.Outcome(&http.Response{StatusCode: 503})
	assert.False(t, ok, "a response that did not come from a loop")
	_, _, ok = transport.Outcome(nil)
	assert.False(t, ok)
}

// TestOutcomeThroughClientTimeout: http.Client.Timeout wraps the body of
// the response it returns; Outcome still finds it, against a real server.
func TestOutcomeThroughClientTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client := newClient(t, fast)
	client.Timeout = time.Minute
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	attempts, stop, ok := transport.Outcome(resp)
	require.True(t, ok)
	assert.Equal(t, 1, attempts)
	assert.True(t, errors.Is(stop, transport.ErrHintOverCap), "%v", stop)
}

func TestOutcomeCostsTheHealthyPathNothing(t *testing.T) {
	ok := &http.Response{StatusCode: 200, Body: http.NoBody}
	notFound := &http.Response{StatusCode: 404, Body: http.NoBody}
	for name, resp := range map[string]*http.Response{"200": ok, "404": notFound} {
		rt := transport.New(roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), transport.Config{})
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := rt.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
		})
		assert.Zero(t, allocs, name)
	}
}

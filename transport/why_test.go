package transport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// post returns a POST with a replayable body and the given headers
// (name, value pairs).
func post(t *testing.T, ctx context.Context, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://api.test/charge", strings.NewReader("charge"))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[header[i]] = []string{header[i+1]}
	}
	return req
}

// TestWhyNotRepeated: a POST that would have been retried were it
// idempotent says so, in the same words, in the stop Outcome reports (with
// or without an observer) and in the give-up event; a key under the
// lower-case name (how rebound sends a key that licenses nothing) gets its
// own words; a status no method retries says nothing.
func TestWhyNotRepeated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		header []string
		why    string
	}{
		{"503, no key", 503, nil, transport.WhyNotRepeated},
		{"502, lower-case key", 502, []string{"idempotency-key", "k1"}, transport.WhyNotRepeatedKey},
		{"500, lower-case X- key", 500, []string{"x-idempotency-key", "k1"}, transport.WhyNotRepeatedKey},
		{"404", 404, nil, ""},
		{"503 advised no retry", 503, nil, ""},
	} {
		for _, observed := range []bool{false, true} {
			rec := &recorder{}
			cfg := transport.Config{NoWait: true}
			if observed {
				cfg.Observer = rec
			}
			base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
				if tc.name == "503 advised no retry" {
					return response(req, tc.code, "", "X-Should-Retry", "false"), nil
				}
				return response(req, tc.code, ""), nil
			}}
			resp, err := transport.New(base, cfg).RoundTrip(post(t, t.Context(), tc.header...))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, 1, base.calls(), "%s: a POST is sent once", tc.name)
			attempts, stop, ok := transport.Outcome(resp)
			if tc.why == "" {
				assert.False(t, ok, "%s: handed back as it came", tc.name)
				continue
			}
			require.True(t, ok, "%s (observed %v): Outcome says why", tc.name, observed)
			assert.Equal(t, 1, attempts)
			assert.ErrorIs(t, stop, transport.ErrFinal)
			assert.Equal(t, "transport: "+tc.why, stop.Error())
			if observed {
				evs := rec.events()
				last := evs[len(evs)-1]
				assert.Equal(t, transport.EventGiveUp, last.Kind)
				assert.Equal(t, transport.StopFinal, last.Stop, "the stop label stays stable")
				assert.Equal(t, tc.why, last.Why)
			}
		}
	}
}

// TestWhyNotRepeatedError: a POST whose connection drops is not repeated,
// and the error says why while matching ErrFinal and the cause as before.
func TestWhyNotRepeatedError(t *testing.T) {
	rec := &recorder{}
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF }}
	_, err := transport.New(base, transport.Config{NoWait: true, Observer: rec}).RoundTrip(post(t, t.Context()))
	require.Error(t, err)
	assert.Equal(t, 1, base.calls())
	assert.ErrorIs(t, err, transport.ErrFinal)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	te, ok := errors.AsType[*transport.Error](err)
	require.True(t, ok)
	assert.Equal(t, transport.StopFinal, te.Stop)
	assert.Equal(t, transport.WhyNotRepeated, te.Why)
	assert.Equal(t, "rebound: 1 attempt, "+transport.WhyNotRepeated+" (unexpected eof): unexpected EOF", err.Error())
	evs := rec.events()
	assert.Equal(t, transport.WhyNotRepeated, evs[len(evs)-1].Why)
}

// TestWhyRetryLicensedByKey: the retries of a POST licensed only by its
// idempotency key say so; those of a GET, and of a POST answered 429
// (retried as if it had no key), do not.
func TestWhyRetryLicensedByKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		code int
		why  string
	}{
		{"POST with a key", func() *http.Request { return post(t, t.Context(), "Idempotency-Key", "k1") }, 503, transport.WhyCallerKey},
		{"POST with a key, 429", func() *http.Request { return post(t, t.Context(), "Idempotency-Key", "k1") }, 429, ""},
		{"GET", func() *http.Request { return get(t, t.Context()) }, 503, ""},
	} {
		rec := &recorder{}
		base := &stub{respond: statuses(tc.code, 200)}
		resp, err := transport.New(base, transport.Config{NoWait: true, Observer: rec}).RoundTrip(tc.req())
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 2, base.calls(), tc.name)
		var retries int
		for _, e := range rec.events() {
			if e.Kind == transport.EventRetry {
				retries++
				assert.Equal(t, tc.why, e.Why, tc.name)
			}
		}
		assert.Equal(t, 1, retries, tc.name)
	}
}

// TestWhyOneAttempt: a retryable outcome of a call allowed one attempt
// says so rather than "attempts exhausted" alone; the sentinel stays.
func TestWhyOneAttempt(t *testing.T) {
	for name, ctx := range map[string]context.Context{
		"NoRetry":       transport.NoRetry(t.Context()),
		"WithAttempts1": transport.WithAttempts(t.Context(), 1),
	} {
		resp, err := transport.New(&stub{respond: statuses(503)}, transport.Config{NoWait: true}).RoundTrip(get(t, ctx))
		require.NoError(t, err)
		resp.Body.Close()
		attempts, stop, ok := transport.Outcome(resp)
		require.True(t, ok, name)
		assert.Equal(t, 1, attempts)
		assert.ErrorIs(t, stop, transport.ErrAttemptsExhausted, name)
		assert.Equal(t, "transport: "+transport.WhyOneAttempt, stop.Error(), name)
	}
	base := &stub{respond: func(int, *http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF }}
	_, err := transport.New(base, transport.Config{MaxAttempts: 1}).RoundTrip(get(t, t.Context()))
	te, ok := errors.AsType[*transport.Error](err)
	require.True(t, ok)
	assert.Equal(t, transport.WhyOneAttempt, te.Why)
	assert.ErrorIs(t, err, transport.ErrAttemptsExhausted)

	// Two attempts allowed: the label says it all.
	resp, err := transport.New(&stub{respond: statuses(503)}, transport.Config{NoWait: true, MaxAttempts: 2}).RoundTrip(get(t, t.Context()))
	require.NoError(t, err)
	resp.Body.Close()
	_, stop, _ := transport.Outcome(resp)
	assert.Equal(t, transport.ErrAttemptsExhausted, stop)
}

// TestWhyCallerDeadline: the caller's deadline ending a hung attempt says
// so, with the setting that helps when no attempt timeout was set; a
// cancellation says it was the caller's. Fake time: no real waits.
func TestWhyCallerDeadline(t *testing.T) {
	hung := func(_ int, req *http.Request) (*http.Response, error) {
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		why     string
	}{
		{"no attempt timeout", 0, transport.WhyCallerDeadline},
		{"attempt timeout longer than the deadline", time.Minute, transport.WhyCallerDeadlineCut},
	} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err := transport.New(&stub{respond: hung}, transport.Config{AttemptTimeout: tc.timeout}).RoundTrip(get(t, ctx))
			te, ok := errors.AsType[*transport.Error](err)
			require.True(t, ok, tc.name)
			assert.Equal(t, tc.why, te.Why, tc.name)
			assert.Equal(t, transport.StopFinal, te.Stop)
			assert.ErrorIs(t, err, transport.ErrFinal)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.True(t, te.Timeout())
		})
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		_, err := transport.New(&stub{respond: hung}, transport.Config{}).RoundTrip(get(t, ctx))
		te, ok := errors.AsType[*transport.Error](err)
		require.True(t, ok)
		assert.Equal(t, transport.WhyCanceled, te.Why)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// TestWhyCostsTheHealthyPathNothing: a POST answered 201, or 404 (final
// for every method), costs no allocation, as a GET does.
func TestWhyCostsTheHealthyPathNothing(t *testing.T) {
	for name, code := range map[string]int{"201": 201, "404": 404} {
		resp := &http.Response{StatusCode: code, Body: http.NoBody}
		rt := transport.New(roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), transport.Config{})
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := rt.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
		})
		assert.Zero(t, allocs, name)
	}
}

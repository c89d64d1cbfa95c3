package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pending retries a 200 whose JSON body says the job is still pending,
// reading the body with PeekBody.
func pending(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
	if resp != nil && resp.StatusCode == http.StatusOK {
		b, perr := transport.PeekBody(resp, 1<<10)
		if perr == nil && bytes.Contains(b, []byte(`"status":"pending"`)) {
			return classify.Verdict{Outcome: classify.Retryable, Reason: "pending"}
		}
	}
	return def
}

// A 200 whose body says "pending" is retried, at the pace the server's
// Retry-After asks; the discarded bodies are closed and the caller gets the
// last response's whole body.
func TestDecideRetriesPendingBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		long := `{"status":"done","result":"` + strings.Repeat("x", 5000) + `"}`
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n < 3 {
				return response(req, 200, `{"status":"pending"}`, "Retry-After", "2"), nil
			}
			return response(req, 200, long), nil
		}}
		obs := &recorder{}
		rt := transport.New(base, transport.Config{Decide: pending, Observer: obs})
		start := time.Now()
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, long, readBody(t, resp))
		assert.Equal(t, 3, base.calls())
		for i, gap := range base.gaps() {
			assert.GreaterOrEqual(t, gap, 2*time.Second, "wait before retry %d", i+1)
		}
		assert.GreaterOrEqual(t, time.Since(start), 4*time.Second)
		for i, e := range obs.events() {
			if e.Kind == transport.EventRetry {
				assert.Equal(t, "pending", e.Reason, "event %d", i)
				assert.True(t, e.FromServer, "event %d", i)
			}
		}
		n, stop, ok := transport.Outcome(resp)
		require.True(t, ok)
		assert.Equal(t, 3, n)
		assert.NoError(t, stop)
	})
}

// The discarded pending responses' bodies are closed; when the attempts run
// out, the caller gets the last pending response with its whole body.
func TestDecidePendingUntilAttemptsRunOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*trackedBody
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			r := response(req, 200, `{"status":"pending","n":`+itoa(n)+`}`)
			bodies = append(bodies, r.Body.(*trackedBody))
			return r, nil
		}}
		rt := transport.New(base, transport.Config{Decide: pending, MaxAttempts: 3})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, `{"status":"pending","n":3}`, readBody(t, resp))
		require.Len(t, bodies, 3)
		for i, b := range bodies {
			// Every original body is closed: the first two were discarded,
			// the last buffered before the loop handed it back.
			assert.True(t, b.isClosed(), "attempt %d", i+1)
		}
		n, stop, ok := transport.Outcome(resp)
		require.True(t, ok)
		assert.Equal(t, 3, n)
		assert.ErrorIs(t, stop, transport.ErrAttemptsExhausted)
	})
}

// A 403 carrying X-Retryable: true is retried, even for a POST without a
// key: the hook's Retryable overrides the idempotency rule. Without the
// header, a 403 stays final, and a 503 on the POST stays final (the
// default rule, which the hook keeps by returning def).
func TestDecideRetryableHeaderOverridesIdempotency(t *testing.T) {
	hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
		if resp != nil && resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Retryable") == "true" {
			return classify.Verdict{Outcome: classify.Retryable, Reason: "x-retryable"}
		}
		return def
	}
	for _, c := range []struct {
		name   string
		first  *http.Response
		calls  int
		status int
	}{
		{"403 x-retryable", response(nil, 403, "no", "X-Retryable", "true"), 2, 200},
		{"403 plain", response(nil, 403, "no"), 1, 403},
		{"503 on POST", response(nil, 503, "busy"), 1, 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
					if n == 1 {
						c.first.Request = req
						return c.first, nil
					}
					return response(req, 200, "ok"), nil
				}}
				rt := transport.New(base, transport.Config{Decide: hook})
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://api.test/v1/orders", strings.NewReader(`{"sku":1}`))
				require.NoError(t, err)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				readBody(t, resp)
				assert.Equal(t, c.status, resp.StatusCode)
				assert.Equal(t, c.calls, base.calls())
				for i, b := range base.bodies {
					assert.Equal(t, `{"sku":1}`, b, "attempt %d carries the whole body", i+1)
				}
			})
		})
	}
}

// A hook that returns Final for a path stops the default retries there,
// while other paths keep them.
func TestDecideNeverRetriesAPath(t *testing.T) {
	hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
		if strings.HasPrefix(req.URL.Path, "/v1/reports/") && def.Outcome == classify.Retryable {
			return classify.Verdict{Outcome: classify.Final, Reason: "reports not retried"}
		}
		return def
	}
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []struct {
			path  string
			calls int
		}{{"/v1/reports/7", 1}, {"/v1/things", transport.DefaultMaxAttempts}} {
			base := &stub{respond: statuses(503)}
			obs := &recorder{}
			rt := transport.New(base, transport.Config{Decide: hook, Observer: obs})
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://api.test"+c.path, nil)
			require.NoError(t, err)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			readBody(t, resp)
			assert.Equal(t, c.calls, base.calls(), c.path)
			evs := obs.events()
			last := evs[len(evs)-1]
			assert.Equal(t, transport.EventGiveUp, last.Kind, c.path)
			if c.calls == 1 {
				assert.Equal(t, "reports not retried", last.Reason)
				assert.Equal(t, transport.StopFinal, last.Stop)
			} else {
				assert.Equal(t, "status 503", last.Reason)
				assert.Equal(t, transport.StopAttempts, last.Stop)
			}
		}
	})
}

// The hook's verdict is normalised: an empty reason for a changed outcome
// reads ReasonCustom, an unknown outcome is final, and Success for an
// error is final (the error is returned, not a nil response).
func TestDecideVerdictNormalised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reset := errors.New("connection reset by peer (test)")
		for _, c := range []struct {
			name   string
			v      classify.Verdict
			err    error
			calls  int
			reason string
		}{
			{"empty reason on a change", classify.Verdict{Outcome: classify.Retryable}, nil, 2, classify.ReasonCustom},
			{"unknown outcome", classify.Verdict{Outcome: 9, Reason: "odd"}, reset, 1, "odd"},
			{"success for an error", classify.Verdict{Outcome: classify.Success, Reason: "fine"}, reset, 1, "fine"},
		} {
			base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
				if c.err != nil {
					return nil, c.err
				}
				if n == 1 {
					return response(req, 404, "missing"), nil
				}
				return response(req, 200, "ok"), nil
			}}
			hooked := 0
			obs := &recorder{}
			rt := transport.New(base, transport.Config{Observer: obs, Decide: func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
				hooked++
				if hooked > 1 {
					return def
				}
				return c.v
			}})
			resp, err := rt.RoundTrip(get(t, t.Context()))
			assert.Equal(t, c.calls, base.calls(), c.name)
			if c.err != nil {
				var te *transport.Error
				require.ErrorAs(t, err, &te, c.name)
				assert.Equal(t, c.reason, te.Reason, c.name)
				assert.Equal(t, transport.StopFinal, te.Stop, c.name)
				continue
			}
			require.NoError(t, err)
			readBody(t, resp)
			assert.Equal(t, c.reason, obs.events()[1].Reason, c.name) // attempt 1, retry 1
		}
	})
}

// The hook is not asked about a gate's refusal (the loop stops there), nor
// after the caller's context ended; it is asked about every other attempt,
// with the attempt's number in its request's context.
func TestDecideNotAskedAboutRefusalsOrCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var asked []int
		hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
			asked = append(asked, transport.AttemptFrom(req.Context()).N)
			return classify.Verdict{Outcome: classify.Retryable, Reason: "always"}
		}
		refusal := &classify.NotSentError{Msg: "gate: no"}
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n < 3 {
				return response(req, 200, "ok"), nil
			}
			return nil, refusal
		}}
		rt := transport.New(base, transport.Config{Decide: hook})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, []int{1, 2}, asked)
		_, stop, ok := transport.Outcome(resp)
		require.True(t, ok)
		assert.ErrorIs(t, stop, transport.ErrRefused)

		asked = nil
		ctx, cancel := context.WithCancel(t.Context())
		base = &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			cancel()
			return nil, context.Canceled
		}}
		_, err = transport.New(base, transport.Config{Decide: hook}).RoundTrip(get(t, ctx))
		require.ErrorIs(t, err, context.Canceled)
		assert.Empty(t, asked)
		assert.Equal(t, 1, base.calls())
	})
}

// With an AttemptTimeout, a hook that peeks at a body that stalls is cut
// off after the timeout: PeekBody returns the bytes read and an error
// matching classify.ErrAttemptTimeout, and the loop goes on.
func TestDecidePeekBoundedByAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var peekErr error
		hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
			if resp == nil {
				return def
			}
			b, err := transport.PeekBody(resp, 1<<10)
			if err != nil {
				peekErr = err
				return classify.Verdict{Outcome: classify.Retryable, Reason: "body stalled"}
			}
			if string(b) != "done" {
				return classify.Verdict{Outcome: classify.Retryable, Reason: "not done"}
			}
			return def
		}
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				r := response(req, 200, "")
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader("part"), stallReader{req.Context()}))
				return r, nil
			}
			return response(req, 200, "done"), nil
		}}
		rt := transport.New(base, transport.Config{Decide: hook, AttemptTimeout: time.Second, BaseDelay: -1})
		start := time.Now()
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		assert.Equal(t, "done", readBody(t, resp))
		assert.ErrorIs(t, peekErr, classify.ErrAttemptTimeout)
		assert.Equal(t, time.Second, time.Since(start))
	})
}

// stallReader blocks until ctx ends, then fails with its cause.
type stallReader struct{ ctx context.Context }

func (s stallReader) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, context.Cause(s.ctx)
}

// The hook runs against a real server: a JSON "pending" answer is polled
// until done, and the caller reads the final body whole.
func TestServerDecidePending(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			io.WriteString(w, `{"status":"pending"}`)
			return
		}
		io.WriteString(w, `{"status":"done","id":42}`)
	}))
	defer srv.Close()
	cfg := fast
	cfg.Decide = pending
	resp, err := newClient(t, cfg).Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, `{"status":"done","id":42}`, readBody(t, resp))
	assert.EqualValues(t, 3, hits.Load())
}

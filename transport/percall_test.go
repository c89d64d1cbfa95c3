package transport_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The attempts of one call follow its context, up or down from the
// Config's; other calls keep the Config's.
func TestWithAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []struct {
			name  string
			ctx   func(context.Context) context.Context
			calls int
			stop  error
		}{
			{"config", func(ctx context.Context) context.Context { return ctx }, 3, transport.ErrAttemptsExhausted},
			{"more", func(ctx context.Context) context.Context { return transport.WithAttempts(ctx, 6) }, 6, transport.ErrAttemptsExhausted},
			{"fewer", func(ctx context.Context) context.Context { return transport.WithAttempts(ctx, 2) }, 2, transport.ErrAttemptsExhausted},
			{"below one is one", func(ctx context.Context) context.Context { return transport.WithAttempts(ctx, -5) }, 1, transport.ErrAttemptsExhausted},
			{"no retry", transport.NoRetry, 1, transport.ErrAttemptsExhausted},
			{"derived context", func(ctx context.Context) context.Context {
				ctx, cancel := context.WithTimeout(transport.NoRetry(ctx), time.Hour)
				t.Cleanup(cancel)
				return ctx
			}, 1, transport.ErrAttemptsExhausted},
			{"last setting wins", func(ctx context.Context) context.Context {
				return transport.WithAttempts(transport.NoRetry(ctx), 5)
			}, 5, transport.ErrAttemptsExhausted},
		} {
			base := &stub{respond: statuses(503)}
			rt := transport.New(base, transport.Config{MaxAttempts: 3})
			resp, err := rt.RoundTrip(get(t, c.ctx(t.Context())))
			require.NoError(t, err, c.name)
			readBody(t, resp)
			assert.Equal(t, c.calls, base.calls(), c.name)
			n, stop, ok := transport.Outcome(resp)
			require.True(t, ok, c.name)
			assert.Equal(t, c.calls, n, c.name)
			assert.ErrorIs(t, stop, c.stop, c.name)
		}
	})
}

// NoRetry also turns off the recording of a body without GetBody: a call
// of one attempt needs no replay.
func TestNoRetryRecordsNoBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: statuses(200)}
		rt := transport.New(base, transport.Config{})
		req, err := http.NewRequestWithContext(transport.NoRetry(t.Context()), http.MethodPut, "http://api.test/v1/things/1", &onceReader{data: "payload"})
		require.NoError(t, err)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		readBody(t, resp)
		assert.Same(t, req.Body, base.reqs[0].Body, "the caller's body goes out as it is")
	})
}

// onceReader is a body without GetBody.
type onceReader struct {
	data string
	off  int
}

func (r *onceReader) Read(b []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(b, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *onceReader) Close() error { return nil }

// The attempt timeout of one call follows its context: set where the
// Config has none, shortened, or removed; other settings made earlier on
// the context are kept.
func TestWithAttemptTimeout(t *testing.T) {
	for _, c := range []struct {
		name    string
		config  time.Duration
		ctx     func(context.Context) context.Context
		elapsed time.Duration // until the call returns
		calls   int
	}{
		// Every attempt hangs; the caller's deadline is 10 s.
		{"none", 0, func(ctx context.Context) context.Context { return ctx }, 10 * time.Second, 1},
		{"config", 4 * time.Second, func(ctx context.Context) context.Context { return ctx }, 10 * time.Second, 3},
		{"set", 0, func(ctx context.Context) context.Context { return transport.WithAttemptTimeout(ctx, time.Second) }, 4 * time.Second, 4},
		{"removed", 4 * time.Second, func(ctx context.Context) context.Context { return transport.WithAttemptTimeout(ctx, 0) }, 10 * time.Second, 1},
		{"with attempts", 0, func(ctx context.Context) context.Context {
			return transport.WithAttemptTimeout(transport.WithAttempts(ctx, 2), time.Second)
		}, 2 * time.Second, 2},
		{"attempts after", 0, func(ctx context.Context) context.Context {
			return transport.WithAttempts(transport.WithAttemptTimeout(ctx, time.Second), 2)
		}, 2 * time.Second, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
					<-req.Context().Done()
					return nil, context.Cause(req.Context())
				}}
				rt := transport.New(base, transport.Config{AttemptTimeout: c.config, BaseDelay: -1})
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				start := time.Now()
				_, err := rt.RoundTrip(get(t, c.ctx(ctx)))
				require.Error(t, err)
				assert.Equal(t, c.elapsed, time.Since(start))
				assert.Equal(t, c.calls, base.calls())
				if c.elapsed < 10*time.Second {
					assert.ErrorIs(t, err, classify.ErrAttemptTimeout)
				} else {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
				}
			})
		})
	}
}

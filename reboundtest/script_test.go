package reboundtest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func do(t *testing.T, rt http.RoundTripper, ctx context.Context, method, url, body string) (*http.Response, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	require.NoError(t, err)
	return (&http.Client{Transport: rt}).Do(req)
}

func read(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

// Each host answers with its steps in turn, then Then, or an
// *UnscriptedError when there is no Then; hosts match in canonical form,
// by name when the port has no steps of its own.
func TestScriptSteps(t *testing.T) {
	s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
		"API.test.":     {{Status: 201, Body: "one", Header: http.Header{"X-N": {"1"}}}, {Status: 404}},
		"api.test:8443": {{Body: "on 8443"}},
	}}
	ctx := context.Background()
	resp, err := do(t, s, ctx, "GET", "http://api.test:80/a", "")
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-N"))
	assert.Equal(t, "one", read(t, resp))
	resp, err = do(t, s, ctx, "GET", "http://api.test/b", "")
	require.NoError(t, err)
	assert.Equal(t, 404, resp.StatusCode)
	read(t, resp)
	resp, err = do(t, s, ctx, "GET", "https://api.test:8443/c", "")
	require.NoError(t, err)
	assert.Equal(t, "on 8443", read(t, resp))
	_, err = do(t, s, ctx, "GET", "http://api.test/d", "")
	require.ErrorIs(t, err, reboundtest.ErrUnscripted)
	var ue *reboundtest.UnscriptedError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "api.test", ue.Host)
	assert.Equal(t, 2, ue.Calls)
	_, err = do(t, s, ctx, "GET", "http://other.test/", "")
	require.ErrorIs(t, err, reboundtest.ErrUnscripted)
	assert.Equal(t, 3, s.Count("api.test"))
	assert.Equal(t, 1, s.Count("api.test:8443"))
	assert.Zero(t, s.Open())

	s.Then = &reboundtest.Step{Status: 503}
	resp, err = do(t, s, ctx, "GET", "http://other.test/", "")
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, 1, s.Open(), "a body not closed is open")
	resp.Body.Close()
	resp.Body.Close()
	assert.Zero(t, s.Open(), "closing twice counts once")
	calls := s.Calls()
	require.Len(t, calls, 6)
	assert.Equal(t, []int{0, 1, 0, -1, -1, -1}, []int{calls[0].Step, calls[1].Step, calls[2].Step, calls[3].Step, calls[4].Step, calls[5].Step})
}

// Through the default chain, in virtual time: the server's Retry-After is
// honoured, a reset retried, and every discarded body closed.
func TestScriptThroughChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"api.test": {
				{Status: 503, Header: http.Header{"Retry-After": {"2"}}, Body: "busy"},
				{Err: reboundtest.ErrReset},
				{Body: `{"id":1}`},
			},
		}}
		rt := rebound.NewTransport(s)
		start := time.Now()
		resp, err := do(t, rt, t.Context(), "GET", "http://api.test/v1/things/1", "")
		require.NoError(t, err)
		assert.Equal(t, `{"id":1}`, read(t, resp))
		assert.GreaterOrEqual(t, time.Since(start), 2*time.Second)
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.Equal(t, 3, s.Count("api.test"))
		assert.Zero(t, s.Open())
		var attempts []int
		for _, c := range s.Calls() {
			attempts = append(attempts, c.Attempt)
		}
		assert.Equal(t, []int{1, 2, 3}, attempts)
	})
}

// A POST is retried after a refused dial, which proves it was not sent,
// carrying its whole body and the same key; after a reset it is not (the
// host does not declare that it honours keys).
func TestScriptPOSTNotSentAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"api.test": {{Err: reboundtest.ErrRefused}, {Status: 201}, {Err: reboundtest.ErrReset}, {Status: 201}},
		}}
		rt := rebound.NewTransport(s)
		resp, err := do(t, rt, t.Context(), "POST", "http://api.test/orders", `{"sku":7}`)
		require.NoError(t, err)
		read(t, resp)
		assert.Equal(t, 201, resp.StatusCode)
		calls := s.Calls()
		require.Len(t, calls, 2)
		assert.False(t, calls[0].Delivered)
		assert.Nil(t, calls[0].Body)
		assert.True(t, calls[1].Delivered)
		assert.Equal(t, `{"sku":7}`, string(calls[1].Body))
		// A generated key toward a host not declared to honour keys goes
		// out under the lower-case name (see idempotency.Transport).
		key := calls[0].Header["idempotency-key"]
		require.Len(t, key, 1)
		assert.Len(t, key[0], 36)
		assert.Equal(t, key, calls[1].Header["idempotency-key"])
		assert.Empty(t, calls[0].Header.Get("Idempotency-Key"), "Header.Get does not find it")
		assert.Equal(t, key[0], calls[0].Key, "Call.Key does")
		assert.Equal(t, key[0], calls[1].Key)
		assert.Equal(t, 1, s.Count("api.test"), "one POST reached the server")

		_, err = do(t, rt, t.Context(), "POST", "http://api.test/orders", `{"sku":8}`)
		require.ErrorIs(t, err, transport.ErrFinal)
		assert.Equal(t, 2, s.Count("api.test"), "the reset POST is not repeated")
	})
}

// A step's Delay is virtual time; a Delay past the attempt timeout or the
// deadline fails the attempt with the context's cause.
func TestScriptDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"slow.test": {{Delay: time.Hour}, {Delay: 300 * time.Millisecond, Body: "late but in time"}},
			"dead.test": {{Delay: time.Hour}},
		}}
		rt := rebound.NewTransport(s, rebound.WithRetry(transport.Config{AttemptTimeout: time.Second, BaseDelay: -1}))
		start := time.Now()
		resp, err := do(t, rt, t.Context(), "GET", "http://slow.test/", "")
		require.NoError(t, err)
		assert.Equal(t, "late but in time", read(t, resp))
		assert.Equal(t, time.Second+300*time.Millisecond, time.Since(start))

		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err = do(t, rt, ctx, "GET", "http://dead.test/", "")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		calls := s.Calls()
		assert.Equal(t, "dead.test", calls[len(calls)-1].Host)
	})
}

// Concurrent requests take a host's steps once each.
func TestScriptConcurrent(t *testing.T) {
	steps := make([]reboundtest.Step, 50)
	for i := range steps {
		steps[i] = reboundtest.Step{Status: 200 + i}
	}
	s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{"api.test": steps}}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[int]bool{}
	)
	for range 50 {
		wg.Go(func() {
			resp, err := do(t, s, context.Background(), "GET", "http://api.test/", "")
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			mu.Lock()
			seen[resp.StatusCode] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Len(t, seen, 50)
	assert.Zero(t, s.Open())
}

// A request body that fails to read fails the attempt with its error.
func TestScriptBodyError(t *testing.T) {
	s := &reboundtest.Script{Then: &reboundtest.Step{}}
	broken := errors.New("disk gone")
	req, err := http.NewRequest("PUT", "http://api.test/x", io.NopCloser(io.MultiReader(strings.NewReader("ab"), errReader{broken})))
	require.NoError(t, err)
	_, err = s.RoundTrip(req)
	require.ErrorIs(t, err, broken)
	assert.Equal(t, classify.ReasonTransport, classify.ErrorReason(err))
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

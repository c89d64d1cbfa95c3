package rebound_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fastRetry = transport.Config{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}

// newTransport returns the chain over a fresh pooled base closed at the end
// of the test.
func newTransport(t *testing.T, opts ...rebound.Option) http.RoundTripper {
	t.Helper()
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return rebound.NewTransport(base, opts...)
}

func TestChainRetriesAPostSafelyWithOneKey(t *testing.T) {
	var mu sync.Mutex
	var keys, bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		bodies = append(bodies, string(b))
		n := len(keys)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	client := &http.Client{Transport: newTransport(t, rebound.WithPolicy(rebound.Policy{Retry: fastRetry, KeysHonored: true}))}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"sku":"42"}`))
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Len(t, keys, 3, "a keyed POST is retried")
	assert.NotEmpty(t, keys[0])
	assert.Equal(t, keys[0], keys[1])
	assert.Equal(t, keys[0], keys[2], "every attempt carries the same key")
	assert.Equal(t, []string{`{"sku":"42"}`, `{"sku":"42"}`, `{"sku":"42"}`}, bodies)
	assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"), "the caller can read the key")
	assert.Empty(t, req.Header.Get("Idempotency-Key"), "the caller's request is untouched")
}

func TestChainWithoutKeysDoesNotRetryAPost(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rt := newTransport(t, rebound.WithPolicy(rebound.Policy{Retry: fastRetry, DisableIdempotencyKeys: true}))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("x"))
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.EqualValues(t, 1, hits.Load())
}

func TestChainBudgetCapsAmplificationDuringAnOutage(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var refusals atomic.Int64
	client := &http.Client{Transport: newTransport(t,
		rebound.WithPolicy(rebound.Policy{Retry: fastRetry, DisableBreaker: true}),
		rebound.WithObserver(rebound.Observer{Budget: func(budget.Refusal) { refusals.Add(1) }}),
	)}
	const calls = 2000
	for range calls {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the caller sees the real 503")
		resp.Body.Close()
	}
	amp := float64(hits.Load()) / calls
	t.Logf("amplification %.3f (%d hits for %d calls), %d refusals", amp, hits.Load(), calls, refusals.Load())
	// 20 % of first attempts plus a floor of 10/s over the 10 s window.
	assert.LessOrEqual(t, amp, 1.0+0.2+100.0/calls)
	assert.Positive(t, refusals.Load())
}

// countingBase answers every request with one status (502 unless reset)
// and counts attempts per host and path.
type countingBase struct {
	mu     sync.Mutex
	status int
	hits   map[string]int
}

func (c *countingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits[req.URL.Host+req.URL.Path]++
	status := c.status
	if status == 0 {
		status = http.StatusBadGateway
	}
	return &http.Response{StatusCode: status, Body: http.NoBody, Request: req}, nil
}

func (c *countingBase) reset(status int) {
	c.mu.Lock()
	c.status, c.hits = status, map[string]int{}
	c.mu.Unlock()
}

func (c *countingBase) count(hostPath string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits[hostPath]
}

func TestChainBreakerFailsFastDuringAnOutage(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var changes []breaker.StateChange
	client := &http.Client{Transport: newTransport(t,
		rebound.WithRetry(fastRetry),
		rebound.WithObserver(rebound.Observer{Breaker: func(c breaker.StateChange) { changes = append(changes, c) }}),
	)}
	var real503, refused int
	start := time.Now()
	for range 100 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			var open *breaker.OpenError
			require.ErrorAs(t, err, &open)
			require.ErrorIs(t, err, classify.ErrNotSent)
			refused++
			continue
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		resp.Body.Close()
		real503++
	}
	t.Logf("%d hits; %d calls saw the 503, %d failed fast", hits.Load(), real503, refused)
	require.Len(t, changes, 1)
	assert.Equal(t, breaker.Open, changes[0].To)
	assert.True(t, changes[0].DeadHost, "tripped as a dead host")
	assert.Equal(t, "10 of the last 10 attempts failed", changes[0].Reason)
	// Once open, nothing reaches the server but one probe a second.
	probes := int(time.Since(start) / time.Second)
	assert.LessOrEqual(t, hits.Load(), int64(10+probes), "once open, nothing reaches the server")
	assert.GreaterOrEqual(t, refused, 97-probes, "calls after the trip fail fast")
}

func TestHostPolicies(t *testing.T) {
	base := &countingBase{hits: map[string]int{}}
	attempts := func(n int) rebound.Policy {
		return rebound.Policy{Retry: transport.Config{MaxAttempts: n, BaseDelay: time.Nanosecond}}
	}
	rt := rebound.NewTransport(base,
		rebound.WithPolicy(attempts(2)),
		rebound.WithHostPolicy("api.example.com", attempts(3)),
		rebound.WithHostPolicy("*.example.com", attempts(5)),
		rebound.WithHostPolicy("*.eu.example.com", attempts(1)),
	)
	tests := []struct {
		name, url string
		want      int
	}{
		{"no policy: default", "http://other.test/", 2},
		{"exact", "http://api.example.com/", 3},
		{"exact ignores port and case", "https://API.Example.com:8443/", 3},
		{"suffix", "http://www.example.com/", 5},
		{"suffix does not match the bare domain", "http://example.com/", 2},
		{"longer suffix wins", "http://pay.eu.example.com/", 1},
		{"not a suffix match across a label", "http://badexample.com/", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.want, base.count(req.URL.Host+req.URL.Path))
		})
	}
}

func TestInvalidHostPatternFailsEveryRequest(t *testing.T) {
	rt := rebound.NewTransport(nil, rebound.WithHostPolicy("http://bad/", rebound.Policy{}))
	req, _ := http.NewRequest(http.MethodGet, "http://example.test/", bytes.NewReader([]byte("x")))
	_, err := rt.RoundTrip(req)
	require.Error(t, err)
	assert.ErrorIs(t, err, rebound.ErrInvalidPattern)
	assert.Contains(t, err.Error(), `WithHostPolicy("http://bad/"): invalid host pattern`)
}

func TestLogObserver(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	rt := newTransport(t, rebound.WithRetry(fastRetry), rebound.WithObserver(rebound.LogObserver(logger)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	out := buf.String()
	assert.Equal(t, 3, strings.Count(out, `msg="rebound: retry"`), out)
	assert.Contains(t, out, `msg="rebound: give up"`)
	assert.Contains(t, out, `stop="attempts exhausted"`)
	assert.Contains(t, out, `reason="status 503"`)
}

func TestNilOptionsAndBase(t *testing.T) {
	rt := rebound.NewTransport(nil, nil)
	require.NotNil(t, rt)
	resp, err := rt.RoundTrip(nil)
	assert.Nil(t, resp)
	require.Error(t, err, "a nil request is an error, not a panic")
}

func TestTransportExposesBreakersAndBudgets(t *testing.T) {
	base := &countingBase{status: http.StatusServiceUnavailable, hits: map[string]int{}}
	rt := rebound.NewTransport(base,
		rebound.WithRetry(transport.Config{MaxAttempts: 1}),
		rebound.WithHostPolicy("*.nobudget.test", rebound.Policy{DisableBudget: true, DisableBreaker: true}),
	)
	for range 10 {
		req, _ := http.NewRequest(http.MethodGet, "http://down.test/", nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	states := rt.Breakers()
	require.Len(t, states, 1)
	assert.Equal(t, "down.test", states[0].Host)
	assert.Equal(t, breaker.Open, states[0].State)
	assert.Equal(t, 1, states[0].Trips)

	// Breakers' host is the form RetryBalance takes.
	balance, ok := rt.RetryBalance(states[0].Host)
	require.True(t, ok)
	// 10 first attempts: 20 % of them plus the 10/s × 10 s reserve.
	assert.InDelta(t, 0.2*10+100, balance, 1e-9)
	_, ok = rt.RetryBalance("a.nobudget.test:8080")
	assert.False(t, ok, "a policy without a budget has no balance")
}

// failingReader is a request body whose source breaks after its text.
type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// TestChainCallerBodyFaultsAreFinalAndDoNotTripTheBreaker: a body that
// cannot be read, or disagrees with its ContentLength, is the caller's
// fault. Each call fails at once, with the cause reachable, and the host's
// breaker, which ten server failures would open, records nothing.
func TestChainCallerBodyFaultsAreFinalAndDoNotTripTheBreaker(t *testing.T) {
	var gets atomic.Int64 // only GETs: a broken PUT's handler may still be running
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
		}
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	rt := rebound.NewTransport(cleanhttp.DefaultPooledTransport(), rebound.WithRetry(fastRetry))
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	diskOnFire := errors.New("disk on fire")
	faults := map[string]func() *http.Request{
		"unreadable": func() *http.Request {
			req, _ := http.NewRequest(http.MethodPut, srv.URL, io.MultiReader(strings.NewReader("abc"), failingReader{diskOnFire}))
			return req
		},
		"unreadable, ContentLength set": func() *http.Request {
			req, _ := http.NewRequest(http.MethodPut, srv.URL, io.MultiReader(strings.NewReader("abc"), failingReader{diskOnFire}))
			req.ContentLength = 10
			return req
		},
		"shorter than ContentLength": func() *http.Request {
			req, _ := http.NewRequest(http.MethodPut, srv.URL, io.MultiReader(strings.NewReader("abc")))
			req.ContentLength = 10
			return req
		},
		"longer than ContentLength": func() *http.Request {
			req, _ := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("abcdefghijkl"))
			req.ContentLength = 10
			return req
		},
	}
	for name, newReq := range faults {
		t.Run(name, func(t *testing.T) {
			for range 11 { // more than the 10 failures that trip a fresh host
				_, err := client.Do(newReq())
				require.ErrorIs(t, err, classify.ErrRequestBody)
				require.NotErrorIs(t, err, classify.ErrNotSent, "never refused by an open circuit")
				if strings.HasPrefix(name, "unreadable") {
					require.ErrorIs(t, err, diskOnFire)
				}
				var te *transport.Error
				require.ErrorAs(t, err, &te)
				if name == "longer than ContentLength" {
					// net/http races here: the server may answer or drop the
					// connection after the declared length, before the
					// client reports the extra bytes. Such an attempt reads
					// as a network error and is retried once; the breaker
					// still stays closed.
					assert.LessOrEqual(t, te.Attempts, 2)
				} else {
					assert.Equal(t, 1, te.Attempts, "another attempt would read the same broken body")
				}
				assert.Equal(t, classify.ReasonRequestBody, te.Reason)
			}
		})
	}
	for _, hs := range rt.Breakers() {
		assert.Equal(t, breaker.Closed, hs.State, hs.Host)
		assert.Less(t, hs.Evidence, 1.0, "never blamed for every call")
	}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, gets.Load(), "the GET reached the server")
}

// TestChainHungServerTripsTheBreaker: a server that accepts connections and
// never answers, called as the README says (a deadline on every call). The
// deadlines count against it, so after ten calls the circuit opens and
// later calls fail fast instead of each waiting out its deadline. This
// test waits out ten real 20 ms deadlines.
func TestChainHungServerTripsTheBreaker(t *testing.T) {
	var hits atomic.Int64
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	rt := rebound.NewTransport(cleanhttp.DefaultPooledTransport())
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	// A dead host trips within 10 attempts (the breaker's bound). Under a
	// loaded machine a call may end before it reached the server; count
	// the calls until the circuit opens rather than assume each one hit.
	opened := -1
	for i := range 11 {
		err := call()
		var oe *breaker.OpenError
		if errors.As(err, &oe) {
			opened = i
			break
		}
		require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
	}
	require.GreaterOrEqual(t, opened, 1, "the circuit opens within 10 calls to a hung host")
	before := hits.Load()
	start := time.Now()
	for i := range 20 {
		err := call()
		var oe *breaker.OpenError
		if !errors.As(err, &oe) {
			// Only a probe (at most one a second) may reach the host.
			require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", opened+1+i)
			continue
		}
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
	}
	probes := hits.Load() - before
	assert.LessOrEqual(t, probes, int64(time.Since(start)/time.Second)+1, "the open circuit kept the calls off the hung server")
}

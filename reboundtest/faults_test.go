package reboundtest_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
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

// okTransport answers every request 200 from one preallocated response.
type okTransport struct{ resp *http.Response }

func (o okTransport) RoundTrip(*http.Request) (*http.Response, error) { return o.resp, nil }

func TestFaultsOffCostsNoAllocation(t *testing.T) {
	f := &reboundtest.Faults{Next: okTransport{&http.Response{StatusCode: 200, Body: http.NoBody}}}
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { f.RoundTrip(req) }))
	require.NoError(t, f.Set(reboundtest.Fault{Host: "api.test", Rate: 1, Status: 503}))
	require.NoError(t, f.Set())
	assert.Zero(t, testing.AllocsPerRun(1000, func() { f.RoundTrip(req) }), "off again after Set()")
}

func BenchmarkFaults(b *testing.B) {
	next := okTransport{&http.Response{StatusCode: 200, Body: http.NoBody}}
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			next.RoundTrip(req)
		}
	})
	b.Run("off", func(b *testing.B) {
		f := &reboundtest.Faults{Next: next}
		b.ReportAllocs()
		for b.Loop() {
			f.RoundTrip(req)
		}
	})
}

// TestFaultsRate sends 10,000 attempts through a rule of rate 0.3: the
// hits are binomial (n 10,000, p 0.3: mean 3,000, sd 45.8); the bounds
// are 5 sd, which a fair draw leaves with odds below 10⁻⁶. The draws are
// fixed by the seed, so the test is also exactly repeatable.
func TestFaultsRate(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, math.MaxUint64} {
		script := &reboundtest.Script{Then: &reboundtest.Step{}}
		f := &reboundtest.Faults{Next: script, Seed: seed}
		require.NoError(t, f.Set(reboundtest.Fault{Host: "api.test", Rate: 0.3, Status: 503}))
		hits := 0
		var seq []bool
		for range 10_000 {
			resp, err := f.RoundTrip(mustGet(t, "http://api.test/"))
			require.NoError(t, err)
			resp.Body.Close()
			hit := resp.StatusCode == 503
			if hit {
				hits++
			}
			seq = append(seq, hit)
		}
		assert.InDelta(t, 3000, hits, 5*45.8, "seed %d", seed)
		assert.Equal(t, 10_000-hits, script.Count("api.test"), "an injected status sends nothing")

		// The same seed, the same faults.
		g := &reboundtest.Faults{Next: &reboundtest.Script{Then: &reboundtest.Step{}}, Seed: seed}
		require.NoError(t, g.Set(reboundtest.Fault{Host: "api.test", Rate: 0.3, Status: 503}))
		for i, want := range seq {
			resp, err := g.RoundTrip(mustGet(t, "http://api.test/"))
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, want, resp.StatusCode == 503, "attempt %d, seed %d", i, seed)
		}
	}
}

func mustGet(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

func TestFaultsMatchHosts(t *testing.T) {
	f := &reboundtest.Faults{Next: &reboundtest.Script{Then: &reboundtest.Step{}}}
	require.NoError(t, f.Set(
		reboundtest.Fault{Host: "API.example.com.", Rate: 1, Status: 501},
		reboundtest.Fault{Host: "*.svc.internal", Rate: 1, Status: 502},
		reboundtest.Fault{Host: "127.0.0.1:8080", Rate: 1, Status: 503},
		reboundtest.Fault{Host: "", Rate: 1, Status: 504},
	))
	for url, want := range map[string]int{
		"https://api.example.com/x":    501,
		"https://api.example.com:8443": 501,
		"http://a.b.svc.internal/":     502,
		"http://svc.internal/":         504,
		"http://127.0.0.1:8080/":       503,
		"http://127.0.0.1:8081/":       504,
		"http://elsewhere.test/":       504,
	} {
		resp, err := f.RoundTrip(mustGet(t, url))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, url)
	}
}

func TestFaultsRejectBadRules(t *testing.T) {
	f := &reboundtest.Faults{}
	require.NoError(t, f.Set(reboundtest.Fault{Rate: 1, Status: 503}))
	for _, c := range []struct {
		rule reboundtest.Fault
		msg  string
	}{
		{reboundtest.Fault{Host: "a.test"}, `Fault 1 (Host "a.test"): Rate 0 is not in (0, 1]`},
		{reboundtest.Fault{Rate: 1.5}, "Rate 1.5 is not in (0, 1]"},
		{reboundtest.Fault{Rate: math.NaN()}, "Rate NaN is not in (0, 1]"},
		{reboundtest.Fault{Rate: 1, Status: 42}, "Status 42 is not in 100 to 599"},
		{reboundtest.Fault{Rate: 1, RetryAfter: time.Second}, "RetryAfter needs a Status"},
		{reboundtest.Fault{Rate: 1, CutAfter: 3}, "CutAfter needs CutBody"},
		{reboundtest.Fault{Rate: 1, Latency: -1}, "Latency -1ns is negative"},
		{reboundtest.Fault{Rate: 1, Status: 503, Err: reboundtest.ErrReset}, "more than one of Err, Status and CutBody"},
		{reboundtest.Fault{Host: "http://a.test/", Rate: 1}, "not a host"},
		{reboundtest.Fault{Host: "*.", Rate: 1}, "not a host"},
		{reboundtest.Fault{Host: "a.*.test", Rate: 1}, "not a host"},
	} {
		err := f.Set(reboundtest.Fault{Rate: 1, Status: 500}, c.rule)
		require.Error(t, err, c.msg)
		assert.Contains(t, err.Error(), c.msg)
	}
	resp, err := f.RoundTrip(mustGet(t, "http://a.test/"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode, "a rejected Set leaves the rules in force")
}

// TestFaultsKinds injects each fault into a real server's attempts, with
// no retry loop between, and checks what the caller meets.
func TestFaultsKinds(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	f := &reboundtest.Faults{}
	defer f.CloseIdleConnections()
	client := &http.Client{Transport: f}
	do := func(rule reboundtest.Fault) (*http.Response, error, int64) {
		require.NoError(t, f.Set(rule))
		before := hits.Load()
		resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("body"))
		return resp, err, hits.Load() - before
	}

	_, err, sent := do(reboundtest.Fault{Rate: 1, Err: reboundtest.ErrRefused})
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.True(t, classify.NotSent(err))
	assert.Zero(t, sent)

	_, err, sent = do(reboundtest.Fault{Rate: 1, Err: reboundtest.ErrReset})
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.False(t, classify.NotSent(err))
	assert.EqualValues(t, 1, sent, "a reset comes after the server did the work")

	_, err, sent = do(reboundtest.Fault{Rate: 1, Err: reboundtest.ErrTimeout})
	assert.True(t, os.IsTimeout(err))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.EqualValues(t, 1, sent)

	resp, err, sent := do(reboundtest.Fault{Rate: 1, Status: 429, RetryAfter: 1500 * time.Millisecond})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 429, resp.StatusCode)
	assert.Equal(t, "2", resp.Header.Get("Retry-After"))
	assert.Zero(t, sent)

	resp, err, _ = do(reboundtest.Fault{Rate: 1, Status: 503})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Retry-After"), "a status without a hint")

	resp, err, sent = do(reboundtest.Fault{Rate: 1, CutBody: true, CutAfter: 100})
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Len(t, b, 100)
	assert.EqualValues(t, 1, sent)

	require.NoError(t, f.Set())
	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Len(t, b, 1000, "off: the server's answer as it was")
}

// TestFaultsLatency runs in a synctest bubble over a Script: the delay
// passes in virtual time, and one longer than the call's deadline ends
// the attempt with the deadline.
func TestFaultsLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := &reboundtest.Script{Then: &reboundtest.Step{}}
		f := &reboundtest.Faults{Next: script}
		require.NoError(t, f.Set(reboundtest.Fault{Host: "api.test", Rate: 1, Latency: 3 * time.Second}))
		start := time.Now()
		resp, err := f.RoundTrip(mustGet(t, "http://api.test/"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 3*time.Second, time.Since(start))
		assert.Equal(t, 1, script.Count("api.test"))

		// Through the chain, with a 1 s attempt timeout: the slow attempt
		// times out and is retried, slow again, until the attempts run out.
		client := &http.Client{Transport: rebound.NewTransport(f, rebound.WithRetry(transport.Config{
			MaxAttempts: 2, AttemptTimeout: time.Second, BaseDelay: time.Millisecond}))}
		_, err = client.Get("http://api.test/")
		require.Error(t, err)
		var te *transport.Error
		require.True(t, errors.As(err, &te))
		assert.Equal(t, 2, te.Attempts)
		assert.Equal(t, 1, script.Count("api.test"), "no attempt outlived the delay")
	})
}

// TestFaultsThroughTheChain puts Faults under a rebound chain against a
// real server: refused dials are retried and every call succeeds; an
// outage of 503s opens the breaker, which then sends nothing.
func TestFaultsThroughTheChain(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	defer srv.Close()
	f := &reboundtest.Faults{Seed: 7}
	rt := rebound.NewTransport(f, reboundtest.NoWait())
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}
	require.NoError(t, f.Set(reboundtest.Fault{Rate: 0.2, Err: reboundtest.ErrRefused}))
	for range 100 {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.EqualValues(t, 100, hits.Load())
	st := rt.Stats()
	assert.Greater(t, st.Total.Attempts, uint64(100), "refused attempts were retried")

	require.NoError(t, f.Set(reboundtest.Fault{Rate: 1, Status: 503}))
	var open int
	for range 100 {
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		} else {
			open++
		}
	}
	assert.Positive(t, open, "the outage opened the breaker")
	assert.EqualValues(t, 100, hits.Load(), "the injected 503s reached no server")
}

package rebound_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
)

// Two local services on one host, each with its own policy: a pattern
// with a port matches that port only, and wins over the host's pattern
// without one. Real servers on 127.0.0.1 answering 503, whose hits show
// the attempts each call made.
func TestPatternWithPort(t *testing.T) {
	var hitsA, hitsB, hitsC atomic.Int64
	serve := func(n *atomic.Int64) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
	}
	a, b, c := serve(&hitsA), serve(&hitsB), serve(&hitsC)
	defer a.Close()
	defer b.Close()
	defer c.Close()
	portOf := func(s *httptest.Server) string { u, _ := url.Parse(s.URL); return u.Port() }

	rt, err := rebound.New(nil, reboundtest.NoWait(),
		rebound.WithPolicy(rebound.Policy{DisableBudget: true}),
		rebound.WithHostPolicy("localhost:"+portOf(a), attempts(2)),
		rebound.WithHostPolicy("127.0.0.1:"+portOf(b), attempts(3)),
		rebound.WithHostPolicy("localhost", attempts(5)),
	)
	require.NoError(t, err)
	client := &http.Client{Transport: rt}
	defer client.CloseIdleConnections()
	get := func(u string) {
		t.Helper()
		resp, err := client.Get(u)
		require.NoError(t, err)
		resp.Body.Close()
	}
	get("http://localhost:" + portOf(a) + "/")
	get("http://127.0.0.1:" + portOf(b) + "/")
	get("http://LocalHost:" + portOf(c) + "/") // the host's pattern, any port
	get("http://127.0.0.1:" + portOf(c) + "/") // no pattern: the default, 4
	assert.EqualValues(t, 2, hitsA.Load(), "localhost:A")
	assert.EqualValues(t, 3, hitsB.Load(), "127.0.0.1:B")
	assert.EqualValues(t, 5+4, hitsC.Load(), "localhost:C (any port), then 127.0.0.1:C (default)")

	for host, want := range map[string]string{
		"localhost:" + portOf(a):         "localhost:" + portOf(a),
		"LocalHost.:" + portOf(a):        "localhost:" + portOf(a),
		"127.0.0.1:" + portOf(b):         "127.0.0.1:" + portOf(b),
		"localhost:" + portOf(b):         "localhost",
		"localhost":                      "localhost",
		"127.0.0.1":                      "",
		"127.0.0.1:" + portOf(c):         "",
		"[::1]:" + portOf(a):             "",
		"localhost:0":                    "localhost",
		"localhost:" + portOf(a) + "000": "localhost",
	} {
		pattern, _ := rt.PolicyFor(host)
		assert.Equal(t, want, pattern, host)
	}
}

// countHosts is a base that answers 503 and counts requests per URL host.
type countHosts map[string]*atomic.Int64

func (c countHosts) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := c[req.URL.Host]; ok {
		n.Add(1)
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

// A URL without a port goes to its scheme's: https://api.example/ meets
// "api.example:443", http://api.example/ meets "api.example:80"; a suffix
// with the port wins over the same suffix without one, and a longer
// suffix over both.
func TestPatternPortDefaultsAndSuffixes(t *testing.T) {
	hosts := countHosts{}
	for _, h := range []string{"api.example", "api.example:8443", "a.svc.internal", "a.svc.internal:9000", "b.eu.svc.internal:9000"} {
		hosts[h] = new(atomic.Int64)
	}
	rt, err := rebound.New(hosts, reboundtest.NoWait(),
		rebound.WithPolicy(rebound.Policy{DisableBudget: true, DisableBreaker: true, Retry: transport.Config{MaxAttempts: 1}}),
		rebound.WithHostPolicy("api.example:443", attempts(2)),
		rebound.WithHostPolicy("api.example:80", attempts(3)),
		rebound.WithHostPolicy("*.svc.internal", attempts(4)),
		rebound.WithHostPolicy("*.svc.internal:9000", attempts(5)),
		rebound.WithHostPolicy("*.eu.svc.internal", attempts(6)),
	)
	require.NoError(t, err)
	for _, tc := range []struct {
		url, host string
		want      int64
	}{
		{"https://api.example/", "api.example", 2},
		{"http://api.example/", "api.example", 3},
		{"https://api.example:8443/", "api.example:8443", 1},
		{"http://a.svc.internal/", "a.svc.internal", 4},
		{"http://a.svc.internal:9000/", "a.svc.internal:9000", 5},
		{"http://b.eu.svc.internal:9000/", "b.eu.svc.internal:9000", 6},
	} {
		before := hosts[tc.host].Load()
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err, tc.url)
		resp.Body.Close()
		assert.Equal(t, tc.want, hosts[tc.host].Load()-before, tc.url)
	}
}

// Two spellings of one host and port are one pattern.
func TestPatternPortDuplicate(t *testing.T) {
	_, err := rebound.New(nil, rebound.WithHostPolicy("LOCALHOST:08080", rebound.Policy{}), rebound.WithHostPolicy("localhost:8080", rebound.Policy{}))
	require.ErrorIs(t, err, rebound.ErrDuplicatePattern)
	assert.Contains(t, err.Error(), "(both localhost:8080)")
	_, err = rebound.New(nil, rebound.WithHostPolicy("localhost", rebound.Policy{}), rebound.WithHostPolicy("localhost:8080", rebound.Policy{}))
	require.NoError(t, err, "a host and one of its ports are two patterns")
	opts, err := rebound.ParsePolicyFile([]byte(`{"hosts": {"localhost:8080": {"max_attempts": 2}, "[::1]:8080": {"max_attempts": 3}}}`))
	require.NoError(t, err)
	rt, err := rebound.New(nil, opts...)
	require.NoError(t, err)
	_, p := rt.PolicyFor("localhost:8080")
	assert.Equal(t, 2, p.Retry.MaxAttempts)
	_, p = rt.PolicyFor("[0:0::1]:8080")
	assert.Equal(t, 3, p.Retry.MaxAttempts)
}

// PolicyFor gives the values in effect: an unset policy reads as every
// link's defaults, a set field as written, and the chain does what it
// reads (the attempts against a real 503 server).
func TestPolicyForEffective(t *testing.T) {
	rt, err := rebound.New(nil, rebound.WithHostPolicy("set.example", rebound.Policy{
		Retry:   transport.Config{MaxAttempts: 7, BaseDelay: -1, MaxRetryAfter: -1},
		Breaker: breaker.Config{MinCalls: 20, Jitter: -1},
		Budget:  budget.Config{Ratio: budget.RatioConfig{Ratio: -1}},
	}))
	require.NoError(t, err)
	_, p := rt.PolicyFor("other.example")
	r := p.Retry
	assert.Equal(t, transport.DefaultMaxAttempts, r.MaxAttempts)
	assert.Equal(t, transport.DefaultBaseDelay, r.BaseDelay)
	assert.Equal(t, transport.DefaultMaxDelay, r.MaxDelay)
	assert.Equal(t, transport.DefaultMaxRetryAfter, r.MaxRetryAfter)
	assert.EqualValues(t, transport.DefaultMaxBodyBytes, r.MaxBodyBytes)
	assert.EqualValues(t, transport.DefaultMaxResponseBytes, r.MaxResponseBytes)
	assert.Nil(t, r.Hedge, "hedging stays off")
	assert.Equal(t, breaker.Config{Window: breaker.DefaultWindow, MinCalls: breaker.DefaultMinCalls, FailureRate: breaker.DefaultFailureRate,
		OpenTimeout: breaker.DefaultOpenTimeout, Jitter: breaker.DefaultJitter, MaxHosts: breaker.DefaultMaxHosts}, p.Breaker)
	assert.Equal(t, budget.RatioConfig{Ratio: budget.DefaultRatio, Window: budget.DefaultWindow, MinPerSecond: budget.DefaultMinPerSecond}, p.Budget.Ratio)
	assert.Equal(t, budget.DefaultMaxHosts, p.Budget.MaxHosts)

	_, p = rt.PolicyFor("set.example")
	assert.Equal(t, 7, p.Retry.MaxAttempts)
	assert.Equal(t, time.Duration(0), p.Retry.BaseDelay, "negative: no backoff")
	assert.Equal(t, time.Duration(0), p.Retry.MaxRetryAfter, "negative: any server wait ends the loop")
	assert.Equal(t, 20, p.Breaker.MinCalls)
	assert.Equal(t, 0.0, p.Breaker.Jitter, "negative: no jitter")
	assert.Equal(t, 0.0, p.Budget.Ratio.Ratio, "negative: only the floor")

	// The chain makes the attempts PolicyFor reads.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	def, err := rebound.New(nil, reboundtest.NoWait())
	require.NoError(t, err)
	defer def.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := def.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	_, p = def.PolicyFor(req.URL.Host)
	assert.EqualValues(t, p.Retry.MaxAttempts, hits.Load())
}

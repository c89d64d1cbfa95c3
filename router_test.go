package rebound_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func attempts(n int) rebound.Policy {
	return rebound.Policy{Retry: transport.Config{MaxAttempts: n, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}}
}

// Every spelling of a host reaches its policy: case, a trailing dot, a
// default port, Unicode or A-label, IPv6 text. (A trailing-dot name does
// not resolve to loopback, so routing is tested at the RoundTripper level.)
func TestHostPolicyMatchesEverySpellingOfItsHost(t *testing.T) {
	base := &countingBase{hits: map[string]int{}}
	rt, err := rebound.New(base,
		rebound.WithPolicy(attempts(2)),
		rebound.WithHostPolicy("*.legacy.internal", attempts(1)),
		rebound.WithHostPolicy("bücher.example", attempts(3)),
		rebound.WithHostPolicy("API.Example.com.", attempts(4)),
		rebound.WithHostPolicy("[::1]", attempts(5)),
	)
	require.NoError(t, err)
	tests := []struct {
		url  string
		want int
	}{
		{"http://svc.legacy.internal/", 1},
		{"http://svc.legacy.internal./", 1},
		{"http://SVC.Legacy.Internal.:80/", 1},
		{"http://legacy.internal/", 2}, // the bare domain is not a subdomain
		{"https://bücher.example/", 3},
		{"https://BÜCHER.example./", 3},
		{"https://xn--bcher-kva.example/", 3},
		{"https://api.example.com/", 4},
		{"https://api.example.com.:443/", 4},
		{"http://[::1]:8080/", 5},
		{"http://[0:0::1]/", 5},
		{"http://other.example/", 2},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			// 429 is retried but is no failure for the breaker, so the
			// spellings do not trip one another's circuit.
			base.reset(http.StatusTooManyRequests)
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.want, base.count(req.URL.Host+req.URL.Path))
		})
	}
}

// A POST toward a host whose policy turns generated keys off is sent once
// in every spelling of the host: a trailing dot used to miss the
// "*.legacy.internal" policy, and the POST went out with a key that
// licensed retries.
func TestTrailingDotKeepsTheHostsKeyPolicy(t *testing.T) {
	base := &countingBase{hits: map[string]int{}}
	rt, err := rebound.New(base,
		rebound.WithPolicy(rebound.Policy{Retry: fastRetry, KeysHonored: true}),
		rebound.WithHostPolicy("*.legacy.internal", rebound.Policy{Retry: fastRetry, DisableIdempotencyKeys: true}),
	)
	require.NoError(t, err)
	for _, url := range []string{"http://svc.legacy.internal/", "http://svc.legacy.internal./"} {
		base.reset(http.StatusServiceUnavailable)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("charge"))
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 1, base.count(req.URL.Host+req.URL.Path), url)
		assert.Empty(t, resp.Request.Header.Get("Idempotency-Key"), url)
	}
}

// One breaker for every spelling of a host: tripped through one, it
// refuses the others (they used to get breakers of their own, so an open
// circuit was bypassed), and Breakers names it in the form RetryBalance
// and PolicyFor take. Real loopback servers, over IPv4 by name and over
// IPv6 by address.
func TestOneBreakerForEverySpellingOfAHost(t *testing.T) {
	v6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	var hits atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	srv4 := httptest.NewServer(h)
	defer srv4.Close()
	srv6 := httptest.NewUnstartedServer(h)
	srv6.Listener.Close()
	srv6.Listener = v6
	srv6.Start()
	defer srv6.Close()
	port := func(s *httptest.Server) string { return s.URL[strings.LastIndexByte(s.URL, ':')+1:] }

	for _, tt := range []struct {
		name      string
		spellings []string
		canonical string
	}{
		{"name", []string{"http://localhost:" + port(srv4), "http://LOCALHOST:" + port(srv4), "http://LocalHost:" + port(srv4)}, "localhost:" + port(srv4)},
		{"IPv6", []string{"http://[::1]:" + port(srv6), "http://[0:0:0:0:0:0:0:1]:" + port(srv6), "http://[::0:1]:" + port(srv6)}, "[::1]:" + port(srv6)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			rt, err := rebound.New(base, rebound.WithRetry(transport.Config{MaxAttempts: 1}))
			require.NoError(t, err)
			client := &http.Client{Transport: rt}
			// Fail in turn through every spelling until a breaker opens.
			opened := false
			for i := 0; i < 100 && !opened; i++ {
				resp, err := client.Get(tt.spellings[i%len(tt.spellings)] + "/")
				require.NoError(t, err, "the breaker opened on a spelling before it was seen open")
				resp.Body.Close()
				for _, s := range rt.Breakers() {
					opened = opened || s.State == breaker.Open
				}
			}
			require.True(t, opened, "no breaker opened after 100 failures")
			before := hits.Load()
			for _, u := range tt.spellings {
				_, err := client.Get(u + "/")
				var oe *breaker.OpenError
				require.ErrorAs(t, err, &oe, "%s bypassed the open circuit", u)
				assert.Equal(t, tt.canonical, oe.Host)
			}
			assert.Equal(t, before, hits.Load(), "a refused spelling reached the server")
			states := rt.Breakers()
			require.Len(t, states, 1)
			assert.Equal(t, tt.canonical, states[0].Host)
			_, ok := rt.RetryBalance(states[0].Host)
			assert.True(t, ok)
		})
	}
}

func TestNewRefusesPatternsThatAreTheSameHost(t *testing.T) {
	tests := []struct {
		name       string
		a, b, want string
	}{
		{"case", "API.example.com", "api.example.com", `WithHostPolicy("api.example.com"): host pattern duplicated: "api.example.com" is the same as "API.example.com" (both api.example.com)`},
		{"trailing dot", "api.example.com", "api.example.com.", `"api.example.com." is the same as "api.example.com"`},
		{"Unicode and A-label", "bücher.example", "XN--BCHER-KVA.example", `(both xn--bcher-kva.example)`},
		{"suffix case", "*.Example.com", "*.example.com", `(both *.example.com)`},
		{"IPv6 text", "[::1]", "[0:0::1]", `(both [::1])`},
		{"twice", "a.example", "a.example", `WithHostPolicy("a.example"): host pattern duplicated: given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := rebound.New(nil, rebound.WithHostPolicy(tt.a, attempts(1)), rebound.WithHostPolicy(tt.b, attempts(2)))
			require.Error(t, err)
			assert.Nil(t, rt)
			assert.ErrorIs(t, err, rebound.ErrDuplicatePattern)
			var ce *rebound.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.b, ce.Pattern)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// A name and its subdomains are different patterns.
	_, err := rebound.New(nil, rebound.WithHostPolicy("example.com", attempts(1)), rebound.WithHostPolicy("*.example.com", attempts(2)))
	assert.NoError(t, err)
}

func TestNewRefusesInvalidPatterns(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"", "empty host pattern"},
		{"*", `"*" is not a host pattern`},
		{"http://api.example.com/", "without a scheme"},
		{"api.example.com/v1", "without a path"},
		{"user@api.example.com", "without a path, query or user"},
		{"api.example.com:0", `port "0" is not a number from 1 to 65535`},
		{"api.example.com:65536", `port "65536" is not a number`},
		{"api.example.com:https", `port "https" is not a number`},
		{"[::1]:", `port "" is not a number`},
		{"*.example.com:+1", `port "+1" is not a number`},
		{"a.*.example.com", `only as a leading "*."`},
		{"*.", "empty host name"},
		{"*.10.0.0.1", "an IP address has no subdomains"},
		{"api example.com", `the character ' '`},
		{"a..example.com", "empty label"},
		{"[not-v6]", "not an IPv6 address"},
		{strings.Repeat("a", 64) + ".example", "label of 64 bytes"},
		{"xn--a.example", "not a valid international name"},
		{"ü_x.example", "not a valid international name"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			_, err := rebound.New(nil, rebound.WithHostPolicy(tt.pattern, rebound.Policy{}))
			require.Error(t, err)
			assert.ErrorIs(t, err, rebound.ErrInvalidPattern)
			assert.Contains(t, err.Error(), tt.want)
			var ce *rebound.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.pattern, ce.Pattern)
		})
	}
}

func TestNewRefusesImpossibleSettings(t *testing.T) {
	_, err := rebound.New(nil,
		rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Jitter: 7}}),
		rebound.WithHostPolicy("a.example", rebound.Policy{Retry: transport.Config{AttemptHeader: "Attempt Number"}}),
	)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rebound: WithPolicy: Retry.Jitter: unknown jitter 7")
	assert.Contains(t, err.Error(), `rebound: WithHostPolicy("a.example"): Retry.AttemptHeader: "Attempt Number" is not a valid header name`)
	var ce *rebound.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Retry.Jitter", ce.Field)
}

// NewTransport keeps the one-value form: an invalid configuration fails
// every request with New's error, and sends nothing.
func TestNewTransportWithInvalidConfigSendsNothing(t *testing.T) {
	base := &countingBase{hits: map[string]int{}}
	rt := rebound.NewTransport(base, rebound.WithHostPolicy("a.example", attempts(1)), rebound.WithHostPolicy("A.example", attempts(1)))
	req, _ := http.NewRequest(http.MethodGet, "http://a.example/", nil)
	_, err := rt.RoundTrip(req)
	require.ErrorIs(t, err, rebound.ErrDuplicatePattern)
	assert.Equal(t, 0, base.count("a.example/"))
}

func TestPolicyFor(t *testing.T) {
	def := attempts(2)
	rt, err := rebound.New(nil,
		rebound.WithPolicy(def),
		rebound.WithHostPolicy("api.example.com", attempts(3)),
		rebound.WithHostPolicy("*.example.com", attempts(4)),
		rebound.WithHostPolicy("*.eu.example.com", attempts(5)),
	)
	require.NoError(t, err)
	tests := []struct {
		host, pattern string
		attempts      int
	}{
		{"api.example.com", "api.example.com", 3},
		{"API.example.com.:8443", "api.example.com", 3},
		{"www.example.com", "*.example.com", 4},
		{"pay.eu.example.com:443", "*.eu.example.com", 5},
		{"example.com", "", 2},
		{"badexample.com", "", 2},
		{"", "", 2},
	}
	for _, tt := range tests {
		pattern, p := rt.PolicyFor(tt.host)
		assert.Equal(t, tt.pattern, pattern, tt.host)
		assert.Equal(t, tt.attempts, p.Retry.MaxAttempts, tt.host)
	}
	// Without host policies every host has the default.
	plain, err := rebound.New(nil, rebound.WithPolicy(def))
	require.NoError(t, err)
	pattern, p := plain.PolicyFor("api.example.com")
	assert.Equal(t, "", pattern)
	assert.Equal(t, 2, p.Retry.MaxAttempts)
}

func TestConfigErrorZeroValue(t *testing.T) {
	assert.Equal(t, "rebound: invalid configuration", (&rebound.ConfigError{}).Error())
	e := &rebound.ConfigError{Pattern: "a.example", Field: "max_attempts", Err: errors.New("bad")}
	assert.Equal(t, `rebound: "a.example": max_attempts: bad`, e.Error())
}

// BenchmarkRouter measures the routed chain on the success path: an
// exact pattern, a suffix, the fallback, and a host that needs folding
// (upper case: one allocation for the lower-case copy).
func BenchmarkRouter(b *testing.B) {
	rt, err := rebound.New(newOKStub(),
		rebound.WithHostPolicy("api.example.com", rebound.Policy{}),
		rebound.WithHostPolicy("*.svc.internal", rebound.Policy{}),
	)
	require.NoError(b, err)
	for _, url := range []string{"http://api.example.com/x", "http://a.svc.internal:8080/x", "http://other.test/x", "http://API.Example.com/x"} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		b.Run(req.URL.Host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

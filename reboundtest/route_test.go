package reboundtest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
)

// status is a handler answering code, counting its requests and the Host
// header they carried.
type status struct {
	code  int
	hits  atomic.Int64
	hosts chan string
}

func (s *status) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	select {
	case s.hosts <- r.Host:
	default:
	}
	w.WriteHeader(s.code)
}

// A production URL reaches the test server, and the host's policy (2
// attempts, not the default 4) is the one that acts.
func TestRouteAppliesHostPolicy(t *testing.T) {
	h := &status{code: http.StatusServiceUnavailable, hosts: make(chan string, 1)}
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	base, err := reboundtest.Route(map[string]*httptest.Server{"payments.test": srv})
	require.NoError(t, err)
	rt, err := rebound.New(base, reboundtest.NoWait(),
		rebound.WithHostPolicy("payments.test", rebound.Policy{Retry: transport.Config{MaxAttempts: 2}}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	resp, err := client.Get("https://payments.test/v1/balance")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.EqualValues(t, 2, h.hits.Load(), "the payments.test policy's attempts")
	assert.Equal(t, "payments.test", <-h.hosts, "the server sees the production Host")
	var hosts []string
	for _, b := range rt.Breakers() {
		hosts = append(hosts, b.Host)
	}
	assert.Equal(t, []string{"payments.test"}, hosts, "the breaker is keyed by the routed name")
}

// The breaker of the routed host opens on a dead host and refuses the
// calls that follow, as in production.
func TestRouteBreakerOpens(t *testing.T) {
	h := &status{code: http.StatusInternalServerError}
	srv := httptest.NewServer(h)
	defer srv.Close()
	base, err := reboundtest.Route(map[string]*httptest.Server{"ledger.test": srv})
	require.NoError(t, err)
	client := &http.Client{Transport: rebound.NewTransport(base,
		reboundtest.NoWait(), rebound.WithPolicy(rebound.Policy{DisableBudget: true, Retry: transport.Config{MaxAttempts: 1}}))}
	defer client.CloseIdleConnections()
	var open error
	for i := 0; i < 20 && open == nil; i++ {
		resp, err := client.Get("http://ledger.test/")
		if err != nil {
			open = err
			break
		}
		resp.Body.Close()
	}
	require.ErrorIs(t, open, breaker.ErrOpen)
	var oe *breaker.OpenError
	require.ErrorAs(t, open, &oe)
	assert.Equal(t, "ledger.test", oe.Host)
	assert.EqualValues(t, 10, h.hits.Load(), "a fresh dead host trips at its 10th failure")
}

// A route with a port wins over the name alone; an unrouted host never
// reaches the network; a scheme the server does not speak is named.
func TestRouteMatching(t *testing.T) {
	a, b := &status{code: 201}, &status{code: 202}
	srvA, srvB := httptest.NewServer(a), httptest.NewServer(b)
	defer srvA.Close()
	defer srvB.Close()
	tls := httptest.NewTLSServer(&status{code: 203})
	defer tls.Close()
	base, err := reboundtest.Route(map[string]*httptest.Server{
		"svc.test:8080":  srvA,
		"SVC.test.":      srvB,
		"secure.test":    tls,
		"bücher.example": srvA,
	})
	require.NoError(t, err)
	client := &http.Client{Transport: rebound.NewTransport(base, reboundtest.NoWait())}
	defer client.CloseIdleConnections()
	for url, want := range map[string]int{
		"http://svc.test:8080/":         201,
		"http://svc.test:9090/":         202,
		"http://svc.test/":              202,
		"https://secure.test/":          203,
		"http://xn--bcher-kva.example/": 201,
	} {
		resp, err := client.Get(url)
		if assert.NoError(t, err, url) {
			resp.Body.Close()
			assert.Equal(t, want, resp.StatusCode, url)
		}
	}
	_, err = client.Get("http://api.example.com/")
	assert.ErrorIs(t, err, reboundtest.ErrNoRoute)
	_, err = client.Get("https://svc.test/")
	assert.ErrorContains(t, err, "routed to a plain-HTTP test server")
	_, err = client.Get("http://secure.test/")
	assert.ErrorContains(t, err, "routed to a TLS test server")
}

func TestRouteRefusesBadRoutes(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	unstarted := httptest.NewUnstartedServer(http.NotFoundHandler())
	defer unstarted.Close()
	for _, tc := range []struct {
		name   string
		routes map[string]*httptest.Server
		want   string
	}{
		{"empty key", map[string]*httptest.Server{"": srv}, "a route is a host name"},
		{"scheme", map[string]*httptest.Server{"https://payments.test": srv}, "without scheme"},
		{"wildcard", map[string]*httptest.Server{"*.test": srv}, "without scheme, path or wildcard"},
		{"bad port", map[string]*httptest.Server{"payments.test:0": srv}, `port "0"`},
		{"bad name", map[string]*httptest.Server{"pay ments.test": srv}, "not allowed in a host name"},
		{"nil server", map[string]*httptest.Server{"payments.test": nil}, "nil or not started"},
		{"unstarted server", map[string]*httptest.Server{"payments.test": unstarted}, "nil or not started"},
		{"same host twice", map[string]*httptest.Server{"payments.test": srv, "PAYMENTS.test.": srv}, `"PAYMENTS.test." and "payments.test" name the same host (payments.test)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := reboundtest.Route(tc.routes)
			assert.Nil(t, base)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "reboundtest.Route: "), err.Error())
		})
	}
}

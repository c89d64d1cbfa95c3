package reboundprom_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rebound-http/rebound"
	reboundprom "github.com/rebound-http/rebound/prometheus"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server answers /ok with 200, /flaky with 503 on its first request and
// 200 after, /down with 503 and /missing with 404.
func server(t *testing.T) *httptest.Server {
	var flaky atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if flaky.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, rt http.RoundTripper, method, url string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func TestCollector(t *testing.T) {
	srv := server(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{MaxAttempts: 3, NoWait: true}))
	defer rt.CloseIdleConnections()
	call(t, rt, http.MethodGet, srv.URL+"/ok")
	call(t, rt, http.MethodGet, srv.URL+"/missing")
	call(t, rt, http.MethodGet, srv.URL+"/flaky")
	call(t, rt, http.MethodGet, srv.URL+"/down")
	call(t, rt, http.MethodPost, srv.URL+"/ok")

	c := reboundprom.NewCollector(rt)
	want := fmt.Sprintf(`
# HELP rebound_calls_total Requests given to the rebound transport.
# TYPE rebound_calls_total counter
rebound_calls_total{host=%[1]q} 5
# HELP rebound_attempts_total Attempts sent, past every gate: one for a call that succeeds at once, none for one a gate refused.
# TYPE rebound_attempts_total counter
rebound_attempts_total{host=%[1]q} 8
# HELP rebound_retries_total Retries scheduled, by the reason the previous attempt failed.
# TYPE rebound_retries_total counter
rebound_retries_total{host=%[1]q,reason="status 503"} 3
# HELP rebound_giveups_total Calls that ended on a failure, by why the retry loop stopped (a final 4xx response is not counted).
# TYPE rebound_giveups_total counter
rebound_giveups_total{host=%[1]q,stop="attempts_exhausted"} 1
# HELP rebound_idempotency_keys_generated_total Idempotency-Keys the chain generated.
# TYPE rebound_idempotency_keys_generated_total counter
rebound_idempotency_keys_generated_total{host=%[1]q} 1
# HELP rebound_breaker_trips_total Times the host's circuit breaker opened.
# TYPE rebound_breaker_trips_total counter
rebound_breaker_trips_total{host=%[1]q} 0
# HELP rebound_breaker_state State of the host's circuit breaker: 0 closed, 1 open, 2 half-open.
# TYPE rebound_breaker_state gauge
rebound_breaker_state{host=%[1]q} 0
# HELP rebound_breakers_open Hosts whose circuit breaker is open or half-open.
# TYPE rebound_breakers_open gauge
rebound_breakers_open 0
`, host)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"rebound_calls_total", "rebound_attempts_total", "rebound_retries_total", "rebound_giveups_total",
		"rebound_idempotency_keys_generated_total", "rebound_breaker_trips_total", "rebound_breaker_state",
		"rebound_breakers_open"))

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)

	// The collector registers in a pedantic registry, which checks that
	// what it collects matches what it describes.
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	assert.Contains(t, names, "rebound_retry_budget_balance")
}

// TestCollectorCardinality checks that hosts beyond rebound.MaxStatsHosts
// share one series set, under host="(other)".
func TestCollectorCardinality(t *testing.T) {
	rt := rebound.NewTransport(stub{}, rebound.WithPolicy(rebound.Policy{DisableBreaker: true}))
	const hosts = rebound.MaxStatsHosts + 100
	for i := range hosts {
		call(t, rt, http.MethodGet, fmt.Sprintf("http://h%d.test/", i))
	}
	c := reboundprom.NewCollector(rt)
	assert.Equal(t, rebound.MaxStatsHosts+1, testutil.CollectAndCount(c, "rebound_calls_total"))
	assert.Equal(t, 100.0, testutil.ToFloat64(onlyHost{c, rebound.OtherHost, "rebound_calls_total"}))
}

// stub answers every request with 200 at once.
type stub struct{}

func (stub) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}}, nil
}

// onlyHost is a collector of one metric of one host of c.
type onlyHost struct {
	c          prometheus.Collector
	host, name string
}

func (o onlyHost) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(o, ch) }

func (o onlyHost) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		var pb dto.Metric
		if !strings.Contains(m.Desc().String(), `"`+o.name+`"`) || m.Write(&pb) != nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "host" && l.GetValue() == o.host {
				ch <- m
			}
		}
	}
}

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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
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
	got := values(t, c)
	for series, want := range map[string]float64{
		`rebound_calls_total{host=%q}`:                             5,
		`rebound_attempts_total{host=%q}`:                          8,
		`rebound_retries_total{host=%q,reason="status 503"}`:       3,
		`rebound_giveups_total{host=%q,stop="attempts_exhausted"}`: 1,
		`rebound_idempotency_keys_generated_total{host=%q}`:        1,
		`rebound_breaker_trips_total{host=%q}`:                     0,
		`rebound_breaker_state{host=%q}`:                           0,
		`rebound_hedges_total{host=%q}`:                            0,
		`rebound_breakers_open{}`:                                  0,
		`rebound_collector_skipped_total{}`:                        0,
	} {
		if strings.Contains(series, "%q") {
			series = fmt.Sprintf(series, host)
		}
		v, ok := got[series]
		if assert.True(t, ok, "no series %s", series) {
			assert.Equal(t, want, v, series)
		}
	}

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

// values collects c and returns every sample, by its name and labels in
// Prometheus's text form (name{a="x",b="y"}).
func values(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestCollectorHostileURL: url.Parse accepts raw bytes in an IPv6 zone.
// A call to such a URL, and a retry reason that is not valid UTF-8 (a
// decision hook's), never make a scrape fail: the registry, with another
// collector beside rebound's, is gathered twice, and both succeed with
// every metric.
func TestCollectorHostileURL(t *testing.T) {
	srv := server(t)
	rt, c, err := reboundprom.New(nil, rebound.WithRetry(transport.Config{MaxAttempts: 2, NoWait: true,
		Decide: func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
			if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
				def.Reason = "bad \xff reason"
			}
			return def
		}}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	reg := prometheus.NewRegistry()
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_requests_total", Help: "The application's own."})
	other.Inc()
	reg.MustRegister(other, c)

	req, err := http.NewRequest(http.MethodGet, "http://[::1%25\xff]:1/", nil)
	require.NoError(t, err, "url.Parse accepts the zone")
	if resp, err := rt.RoundTrip(req); err == nil {
		resp.Body.Close()
	}
	call(t, rt, http.MethodGet, srv.URL+"/down")

	for scrape := 1; scrape <= 2; scrape++ {
		families, err := reg.Gather()
		require.NoError(t, err, "scrape %d", scrape)
		names := map[string]bool{}
		for _, f := range families {
			names[f.GetName()] = true
		}
		for _, n := range []string{"app_requests_total", "rebound_calls_total", "rebound_attempt_duration_seconds", "rebound_collector_skipped_total"} {
			assert.True(t, names[n], "scrape %d lacks %s", scrape, n)
		}
	}
	got := values(t, onlyName{c, "rebound_calls_total"})
	assert.Equal(t, 1.0, got[`rebound_calls_total{host="[::1%\\xff]:1"}`], "the host's bad byte escaped: %v", got)
	skipped := func() float64 { return testutil.ToFloat64(onlyName{c, "rebound_collector_skipped_total"}) }
	before := skipped() // counts its own collect
	_, err = reg.Gather()
	require.NoError(t, err)
	assert.Equal(t, 2.0, skipped()-before, "the retry reason's series skipped, once per collect")

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// onlyName is a collector of one metric of c.
type onlyName struct {
	c    prometheus.Collector
	name string
}

func (o onlyName) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(o, ch) }

func (o onlyName) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+o.name+`"`) {
			ch <- m
		}
	}
}

// TestDurations: each attempt is timed under its host, hosts past
// rebound.MaxStatsHosts share host="(other)", and the histogram passes the
// linter.
func TestDurations(t *testing.T) {
	srv := server(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt, c, err := reboundprom.New(nil, rebound.WithRetry(transport.Config{MaxAttempts: 3, NoWait: true}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()
	call(t, rt, http.MethodGet, srv.URL+"/ok")
	call(t, rt, http.MethodGet, srv.URL+"/flaky") // two attempts

	got := values(t, onlyName{c, "rebound_attempt_duration_seconds"})
	assert.Equal(t, 3.0, got[fmt.Sprintf("rebound_attempt_duration_seconds{host=%q}", host)], "%v", got)

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)

	d := reboundprom.NewDurations()
	drt := rebound.NewTransport(d.Base(stub{}), rebound.WithPolicy(rebound.Policy{DisableBreaker: true}))
	for i := range rebound.MaxStatsHosts + 10 {
		call(t, drt, http.MethodGet, fmt.Sprintf("http://h%d.test/", i))
	}
	assert.Equal(t, rebound.MaxStatsHosts+1, testutil.CollectAndCount(d), "one series per host, and one for the rest")
	assert.Equal(t, 10.0, values(t, d)[`rebound_attempt_duration_seconds{host="(other)"}`])
}

// rebound_hedges_total and rebound_attempts_total count a hedge only when
// it was sent: against a real server's own count, with a retry budget
// that refuses most hedges.
func TestCollectorHedgesMatchServer(t *testing.T) {
	var requests, hedges atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("X-Attempt") != "1" {
			hedges.Add(1)
			return
		}
		select { // the first attempt is slow: it is hedged
		case <-r.Context().Done():
		case <-time.After(80 * time.Millisecond):
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil, rebound.WithPolicy(rebound.Policy{
		DisableBreaker: true,
		Budget:         budget.Config{Ratio: budget.RatioConfig{Ratio: 0.1, MinPerSecond: -1}},
		Retry:          transport.Config{AttemptHeader: "X-Attempt", Hedge: &transport.HedgeConfig{Delay: 20 * time.Millisecond}},
	}))
	defer rt.CloseIdleConnections()
	for range 20 {
		call(t, rt, http.MethodGet, srv.URL+"/")
	}
	c := reboundprom.NewCollector(rt)
	var got map[string]float64
	assert.Eventually(t, func() bool {
		got = values(t, c)
		return got[fmt.Sprintf(`rebound_hedges_total{host=%q}`, host)] == float64(hedges.Load()) &&
			got[fmt.Sprintf(`rebound_attempts_total{host=%q}`, host)] == float64(requests.Load())
	}, 5*time.Second, 10*time.Millisecond)
	t.Logf("the server saw %d requests, %d hedges; the collector says %v attempts, %v hedges", requests.Load(), hedges.Load(),
		got[fmt.Sprintf(`rebound_attempts_total{host=%q}`, host)], got[fmt.Sprintf(`rebound_hedges_total{host=%q}`, host)])
	assert.Positive(t, hedges.Load())
	assert.Less(t, hedges.Load(), int64(20), "the budget refused some hedges")
}

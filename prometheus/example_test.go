package reboundprom_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/rebound-http/rebound"
	reboundprom "github.com/rebound-http/rebound/prometheus"
	"github.com/rebound-http/rebound/transport"
)

// A call retried once, exported: serve reg with promhttp.HandlerFor.
func ExampleNewCollector() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{NoWait: true})) // no waiting in an example
	defer rt.CloseIdleConnections()

	reg := prometheus.NewRegistry()
	reg.MustRegister(reboundprom.NewCollector(rt))
	// http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	out, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, "rebound_attempts_total", "rebound_retries_total")
	if err != nil {
		panic(err)
	}
	// The host label is the server's address; its port changes every run.
	fmt.Print(strings.ReplaceAll(string(out), strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1:PORT"))
	// Output:
	// # HELP rebound_attempts_total Attempts sent to the host, past every gate: one for a call answered at once, none for a call a gate refused, one more per retry or hedge. Healthy: close to rebound_calls_total.
	// # TYPE rebound_attempts_total counter
	// rebound_attempts_total{host="127.0.0.1:PORT"} 2
	// # HELP rebound_retries_total Retries scheduled, by the reason the previous attempt failed (status 503, connection reset, ...). Healthy: a small share of rebound_calls_total; the retry budget caps it near 20 % plus 10 per second, and the reason that grows names the fault.
	// # TYPE rebound_retries_total counter
	// rebound_retries_total{host="127.0.0.1:PORT",reason="status 503"} 1
}

// A chain built by New exports the counters and a histogram of its
// attempts' durations in one registration.
func ExampleNew() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	rt, c, err := reboundprom.New(nil, rebound.WithRetry(transport.Config{NoWait: true}))
	if err != nil {
		panic(err)
	}
	defer rt.CloseIdleConnections()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() == "rebound_attempt_duration_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			fmt.Println(f.GetName(), "attempts timed:", h.GetSampleCount(), "buckets:", len(h.GetBucket()))
		}
	}
	// Output:
	// rebound_attempt_duration_seconds attempts timed: 2 buckets: 12
}

package reboundprom

import (
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/internal/hostname"
)

// DurationBuckets are the upper bounds, in seconds, of the attempt
// duration histogram: from 5 ms (a warm connection on a local network)
// through the 100 ms to 1 s of most API calls, to 10 s and 30 s (an
// attempt that hangs until a deadline or the learned attempt timeout ends
// it), the boundaries OpenTelemetry recommends for
// http.client.request.duration plus one for those hangs.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Durations is a histogram of the time attempts take, per host: the
// series rebound_attempt_duration_seconds{host}, with DurationBuckets.
// Base times each attempt that reaches the chain's base, from sending it
// to its response headers or its error (what a gate refused is not
// timed). The host label is the canonical host, as in Stats: the first
// rebound.MaxStatsHosts hosts have series of their own and the others
// share rebound.OtherHost, so the series stay bounded.
//
// It is a prometheus.Collector, safe for concurrent use; register it
// beside a Collector, or let New put both in one. Make one with
// NewDurations; the zero value is not usable.
type Durations struct {
	vec *prometheus.HistogramVec

	// hosts maps a canonical host to its series. It is replaced, never
	// modified, when a host is added (under mu), so a lookup is an atomic
	// load and a map read, without allocation.
	hosts atomic.Pointer[map[string]prometheus.Observer]
	mu    sync.Mutex
	other prometheus.Observer // the other hosts' series, once needed; guarded by mu
}

// NewDurations returns an empty histogram.
func NewDurations() *Durations {
	d := &Durations{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rebound_attempt_duration_seconds",
		Help: "Time from sending an attempt to its response headers or its error, per host (each retry and hedge is an attempt of its own). " +
			"Healthy: what the host's own latency objective says; a tail that grows toward the 10 s and 30 s buckets means attempts hang until a deadline ends them.",
		Buckets: DurationBuckets,
	}, []string{"host"})}
	return d
}

// Describe implements prometheus.Collector.
func (d *Durations) Describe(ch chan<- *prometheus.Desc) { d.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (d *Durations) Collect(ch chan<- prometheus.Metric) { d.vec.Collect(ch) }

// observer returns the histogram of a canonical host.
func (d *Durations) observer(host string) prometheus.Observer {
	if m := d.hosts.Load(); m != nil {
		if o, ok := (*m)[host]; ok {
			return o
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var old map[string]prometheus.Observer
	if m := d.hosts.Load(); m != nil {
		old = *m
	}
	if o, ok := old[host]; ok {
		return o
	}
	if len(old) >= rebound.MaxStatsHosts {
		return d.otherLocked()
	}
	o, err := d.vec.GetMetricWithLabelValues(host)
	if err != nil { // not a valid label; hostname makes every host one
		return d.otherLocked()
	}
	m := maps.Clone(old)
	if m == nil {
		m = map[string]prometheus.Observer{}
	}
	m[strings.Clone(host)] = o // host may be part of a request's URL
	d.hosts.Store(&m)
	return o
}

// otherLocked returns the series of the hosts past the bound, making it
// on first use. The caller holds d.mu.
func (d *Durations) otherLocked() prometheus.Observer {
	if d.other == nil {
		d.other = d.vec.WithLabelValues(rebound.OtherHost)
	}
	return d.other
}

// Base returns a RoundTripper to place as the rebound chain's base, in
// front of next (nil means a pooled transport from go-cleanhttp), that
// times every attempt in d.
func (d *Durations) Base(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	return &timedBase{next: next, d: d}
}

type timedBase struct {
	next http.RoundTripper
	d    *Durations
}

// RoundTrip sends req through next and times it.
func (b *timedBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return b.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := b.next.RoundTrip(req)
	b.d.observer(hostname.FromURL(req.URL)).Observe(time.Since(start).Seconds())
	return resp, err
}

// CloseIdleConnections closes next's idle connections, when it has that
// method.
func (b *timedBase) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

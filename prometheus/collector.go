// Package reboundprom exports a rebound Transport's counters to
// Prometheus: a Collector that reads Transport.Stats at each scrape.
//
//	prometheus.MustRegister(reboundprom.NewCollector(rt))
//
// Every series carries a host label: the canonical URL host
// ("api.example.com", "10.0.0.7:8080"), or "(other)" for the hosts beyond
// rebound.MaxStatsHosts, counted together, so a client that calls many
// hosts still exports a bounded number of series (at most 257 hosts; per
// host at most 33 reasons, 10 stops and 4 gates).
//
//	rebound_calls_total{host}                   requests given to the transport
//	rebound_attempts_total{host}                attempts sent, past every gate
//	rebound_retries_total{host,reason}          retries scheduled, by why the attempt failed
//	rebound_giveups_total{host,stop}            calls ended on a failure, by why the loop stopped
//	rebound_refusals_total{host,gate}           calls a gate ended unsent: breaker, budget, hold
//	rebound_hedges_total{host}                  hedged attempts sent
//	rebound_idempotency_keys_generated_total{host}
//	rebound_breaker_trips_total{host}           times the host's circuit breaker opened
//	rebound_breaker_state{host}                 0 closed, 1 open, 2 half-open
//	rebound_retry_budget_balance{host}          retries the host's budget allows now
//	rebound_breakers_open                       hosts whose breaker is open or half-open
//	rebound_collector_skipped_total             series not exported (a label not valid UTF-8)
//	rebound_attempt_duration_seconds{host}      histogram of attempt durations (Durations; New)
//
// Each series' help text says what it counts and what a healthy value is.
//
// The stop label is a short name of the transport.Stop* constant:
// final, attempts_exhausted, refused, deadline, hint_over_cap,
// body_not_replayable, response_too_large, canceled, held.
package reboundprom

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// Collector is a prometheus.Collector over a Transport's Stats: each
// Collect reads one snapshot. It never panics and never fails a scrape: a
// series it cannot export (a label that is not valid UTF-8, from a
// decision hook's reason, say) is skipped and counted in
// rebound_collector_skipped_total, so one bad value never costs the
// registry's other metrics. It is safe for concurrent use; make one with
// NewCollector (the zero value has no Transport to read and panics).
type Collector struct {
	rt        *rebound.Transport
	durations *Durations // nil: none exported
	skipped   atomic.Uint64
}

// NewCollector returns a Collector of rt's counters. Register it once per
// Transport; two Transports in one registry need a label of their own
// (prometheus.WrapRegistererWith). For attempt durations too, build the
// Transport with New, or register a Durations beside it.
func NewCollector(rt *rebound.Transport) *Collector { return &Collector{rt: rt} }

// New returns rebound.New(d.Base(base), opts...), with d a new Durations,
// and a Collector of the Transport's counters that also exports d's
// histogram: one registration exports everything.
//
//	rt, c, err := reboundprom.New(nil)
//	prometheus.MustRegister(c)
func New(base http.RoundTripper, opts ...rebound.Option) (*rebound.Transport, *Collector, error) {
	d := NewDurations()
	rt, err := rebound.New(d.Base(base), opts...)
	if err != nil {
		return nil, nil, err
	}
	return rt, &Collector{rt: rt, durations: d}, nil
}

// Help texts say what each series counts and what a healthy value is.
var (
	callsDesc = prometheus.NewDesc("rebound_calls_total",
		"Requests given to the rebound transport, per host. Healthy: rebound_attempts_total / rebound_calls_total near 1 (every call answered at its first attempt); "+
			"well above 1, the host is failing and calls are being retried.", []string{"host"}, nil)
	attemptsDesc = prometheus.NewDesc("rebound_attempts_total",
		"Attempts sent to the host, past every gate: one for a call answered at once, none for a call a gate refused, one more per retry or hedge. "+
			"Healthy: close to rebound_calls_total.", []string{"host"}, nil)
	retriesDesc = prometheus.NewDesc("rebound_retries_total",
		"Retries scheduled, by the reason the previous attempt failed (status 503, connection reset, ...). Healthy: a small share of rebound_calls_total; "+
			"the retry budget caps it near 20 % plus 10 per second, and the reason that grows names the fault.", []string{"host", "reason"}, nil)
	giveUpsDesc = prometheus.NewDesc("rebound_giveups_total",
		"Calls that ended on a failure, by why the retry loop stopped (attempts_exhausted: the host kept failing; refused: a gate stopped the retries; deadline: "+
			"the caller's deadline came first; ...). A final 4xx response is the server's answer and is not counted. Healthy: 0, or a steady trickle.", []string{"host", "stop"}, nil)
	refusalsDesc = prometheus.NewDesc("rebound_refusals_total",
		"Calls a gate ended without sending them, by gate: breaker (the host's circuit is open), budget (retries over their share of traffic), "+
			"hold (the server asked for a pause). Healthy: 0; non-zero means failures reached callers faster than the host would have answered.", []string{"host", "gate"}, nil)
	hedgesDesc = prometheus.NewDesc("rebound_hedges_total",
		"Hedged attempts sent (each also counted in rebound_attempts_total) because an attempt was slower than the hedging delay. "+
			"Healthy: a few percent of rebound_calls_total, the slow tail the delay targets; 0 when hedging is off.", []string{"host"}, nil)
	keysDesc = prometheus.NewDesc("rebound_idempotency_keys_generated_total",
		"Idempotency-Keys the chain generated, for POST and PATCH calls that had none. Informative: about the host's non-idempotent calls.", []string{"host"}, nil)
	tripsDesc = prometheus.NewDesc("rebound_breaker_trips_total",
		"Times the host's circuit breaker opened (calls then fail fast until a probe succeeds). Healthy: 0; each trip is a clear run of failures.", []string{"host"}, nil)
	stateDesc = prometheus.NewDesc("rebound_breaker_state",
		"State of the host's circuit breaker: 0 closed (healthy: calls go through), 1 open (calls fail fast, one probe per second), "+
			"2 half-open (a probe is testing the host).", []string{"host"}, nil)
	balanceDesc = prometheus.NewDesc("rebound_retry_budget_balance",
		"Retries the budget serving the host would allow now: 20 % of its requests over the last 10 s plus a reserve of 10 per second, minus the retries made "+
			"(with the default budget). Healthy: above 0 (on a quiet host, about the reserve); at 0 the next retry is refused and a failure reaches its caller unretried "+
			"(rebound_refusals_total{gate=\"budget\"}).", []string{"host"}, nil)
	openDesc = prometheus.NewDesc("rebound_breakers_open",
		"Hosts whose circuit breaker is open or half-open. Healthy: 0.", nil, nil)
	skippedDesc = prometheus.NewDesc("rebound_collector_skipped_total",
		"Series the collector could not export (a label that is not valid UTF-8) and skipped, summed over scrapes. Healthy: 0.", nil, nil)
)

// Describe sends the descriptors of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{callsDesc, attemptsDesc, retriesDesc, giveUpsDesc, refusalsDesc,
		hedgesDesc, keysDesc, tripsDesc, stateDesc, balanceDesc, openDesc, skippedDesc} {
		ch <- d
	}
	if c.durations != nil {
		c.durations.Describe(ch)
	}
}

// Collect reads the Transport's Stats and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.rt.Stats()
	c.send(ch, openDesc, prometheus.GaugeValue, float64(s.OpenBreakers))
	for _, h := range s.Hosts {
		c.collectHost(ch, &h)
		c.send(ch, stateDesc, prometheus.GaugeValue, float64(h.Breaker), h.Host)
		if h.HasBudget {
			c.send(ch, balanceDesc, prometheus.GaugeValue, h.RetryBalance, h.Host)
		}
	}
	if s.Other.Calls > 0 || s.Other.BreakerTrips > 0 {
		c.collectHost(ch, &s.Other)
	}
	if c.durations != nil {
		c.durations.Collect(ch)
	}
	ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(c.skipped.Load()))
}

// send sends a metric, or counts it skipped when it cannot be made.
func (c *Collector) send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		c.skipped.Add(1)
		return
	}
	ch <- m
}

// collectHost sends h's counters.
func (c *Collector) collectHost(ch chan<- prometheus.Metric, h *rebound.HostStats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		c.send(ch, d, prometheus.CounterValue, float64(v), append([]string{h.Host}, labels...)...)
	}
	counter(callsDesc, h.Calls)
	counter(attemptsDesc, h.Attempts)
	counter(hedgesDesc, h.Hedges)
	counter(keysDesc, h.KeysGenerated)
	counter(tripsDesc, h.BreakerTrips)
	for reason, n := range h.Retries {
		counter(retriesDesc, n, reason)
	}
	for stop, n := range h.GiveUps {
		counter(giveUpsDesc, n, StopLabel(stop))
	}
	for gate, n := range h.Refusals {
		counter(refusalsDesc, n, gate)
	}
}

// StopLabel returns the stop label of a transport.Stop* constant: a short
// snake_case name ("attempts_exhausted"), or, for a stop this version
// does not know, the constant in snake_case.
func StopLabel(stop string) string {
	switch stop {
	case transport.StopFinal:
		return "final"
	case transport.StopAttempts:
		return "attempts_exhausted"
	case transport.StopRefused:
		return "refused"
	case transport.StopDeadline:
		return "deadline"
	case transport.StopHintOverCap:
		return "hint_over_cap"
	case transport.StopBodyNotReplay:
		return "body_not_replayable"
	case transport.StopResponseTooBig:
		return "response_too_large"
	case transport.StopCanceled:
		return "canceled"
	case transport.StopHeld:
		return "held"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, stop)
}

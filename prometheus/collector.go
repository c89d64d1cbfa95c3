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
//
// The stop label is a short name of the transport.Stop* constant:
// final, attempts_exhausted, refused, deadline, hint_over_cap,
// body_not_replayable, response_too_large, canceled, held.
package reboundprom

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// Collector is a prometheus.Collector over a Transport's Stats: each
// Collect reads one snapshot. It is safe for concurrent use; make one with
// NewCollector (the zero value has no Transport to read and panics).
type Collector struct {
	rt *rebound.Transport
}

// NewCollector returns a Collector of rt's counters. Register it once per
// Transport; two Transports in one registry need a label of their own
// (prometheus.WrapRegistererWith).
func NewCollector(rt *rebound.Transport) *Collector { return &Collector{rt: rt} }

var (
	callsDesc = prometheus.NewDesc("rebound_calls_total",
		"Requests given to the rebound transport.", []string{"host"}, nil)
	attemptsDesc = prometheus.NewDesc("rebound_attempts_total",
		"Attempts sent, past every gate: one for a call that succeeds at once, none for one a gate refused.", []string{"host"}, nil)
	retriesDesc = prometheus.NewDesc("rebound_retries_total",
		"Retries scheduled, by the reason the previous attempt failed.", []string{"host", "reason"}, nil)
	giveUpsDesc = prometheus.NewDesc("rebound_giveups_total",
		"Calls that ended on a failure, by why the retry loop stopped (a final 4xx response is not counted).", []string{"host", "stop"}, nil)
	refusalsDesc = prometheus.NewDesc("rebound_refusals_total",
		"Calls ended by a gate's refusal, unsent, by gate.", []string{"host", "gate"}, nil)
	hedgesDesc = prometheus.NewDesc("rebound_hedges_total",
		"Hedged attempts sent (each also counted in rebound_attempts_total).", []string{"host"}, nil)
	keysDesc = prometheus.NewDesc("rebound_idempotency_keys_generated_total",
		"Idempotency-Keys the chain generated.", []string{"host"}, nil)
	tripsDesc = prometheus.NewDesc("rebound_breaker_trips_total",
		"Times the host's circuit breaker opened.", []string{"host"}, nil)
	stateDesc = prometheus.NewDesc("rebound_breaker_state",
		"State of the host's circuit breaker: 0 closed, 1 open, 2 half-open.", []string{"host"}, nil)
	balanceDesc = prometheus.NewDesc("rebound_retry_budget_balance",
		"Retries the budget serving the host would allow now.", []string{"host"}, nil)
	openDesc = prometheus.NewDesc("rebound_breakers_open",
		"Hosts whose circuit breaker is open or half-open.", nil, nil)
)

// Describe sends the descriptors of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{callsDesc, attemptsDesc, retriesDesc, giveUpsDesc, refusalsDesc,
		hedgesDesc, keysDesc, tripsDesc, stateDesc, balanceDesc, openDesc} {
		ch <- d
	}
}

// Collect reads the Transport's Stats and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.rt.Stats()
	ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(s.OpenBreakers))
	for _, h := range s.Hosts {
		collectHost(ch, &h)
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, float64(h.Breaker), h.Host)
		if h.HasBudget {
			ch <- prometheus.MustNewConstMetric(balanceDesc, prometheus.GaugeValue, h.RetryBalance, h.Host)
		}
	}
	if s.Other.Calls > 0 || s.Other.BreakerTrips > 0 {
		collectHost(ch, &s.Other)
	}
}

// collectHost sends h's counters.
func collectHost(ch chan<- prometheus.Metric, h *rebound.HostStats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{h.Host}, labels...)...)
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

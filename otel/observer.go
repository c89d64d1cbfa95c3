package reboundotel

import (
	"context"
	"net/http"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of rebound's span events and instruments.
const (
	// AttemptKey is the number of the attempt an event is about, from 1
	// (the attempts a give-up reports were sent).
	AttemptKey = attribute.Key("rebound.attempt")
	// ReasonKey is why the attempt failed: the classify reason ("status
	// 503", "connection reset") or a decision hook's.
	ReasonKey = attribute.Key("rebound.reason")
	// WaitKey is a wait's duration, in seconds.
	WaitKey = attribute.Key("rebound.wait.duration")
	// ServerHintKey says whether the server asked for the wait
	// (Retry-After, a rate-limit header) rather than backoff.
	ServerHintKey = attribute.Key("rebound.wait.server_hint")
	// WaitKindKey says what the wait is before: "retry", or "hold" (an
	// attempt waiting for its turn at its host's admission; see
	// transport.Event.Limit for why).
	WaitKindKey = attribute.Key("rebound.wait.kind")
	// StopKey is why the retry loop stopped (transport.Stop*).
	StopKey = attribute.Key("rebound.stop")
	// GateKey is the gate that refused (rebound.GateBreaker, GateBudget,
	// GateHint, GateQuota, GatePace, GateIsolated, GateOther).
	GateKey = attribute.Key("rebound.gate")
)

// Observer returns a rebound.Observer that reports the chain's decisions:
// on the caller's span (the span in the request's context, when it is
// recording) an event "rebound.wait" for each wait (before a retry, or
// for a held host), "rebound.refusal" when a gate refuses an attempt and
// "rebound.give_up" when a call ends on a failure, "rebound.hedge" when a
// hedge is sent; and the counters rebound.client.retries (by ReasonKey),
// rebound.client.hedges, rebound.client.give_ups (by
// StopKey; a final 4xx response is not counted, as in rebound.Stats),
// rebound.client.refusals (by GateKey) and rebound.client.breaker.trips,
// with server.address and server.port, and the histogram
// rebound.client.wait.duration. Attempts themselves are Base's.
func (in *Instrumentation) Observer() rebound.Observer {
	return rebound.Observer{Retry: in.observe, Breaker: in.breakerChanged}
}

func (in *Instrumentation) observe(e transport.Event) {
	if e.Kind == transport.EventAttempt || e.Request == nil {
		return
	}
	ctx := e.Request.Context()
	span := trace.SpanFromContext(ctx)
	host := in.requestHost(e.Request)
	switch e.Kind {
	case transport.EventRetry, transport.EventHold:
		kind := "retry"
		if e.Kind == transport.EventHold {
			kind = "hold"
		}
		in.waits.Record(ctx, e.Delay.Seconds(), metric.WithAttributes(append(host, WaitKindKey.String(kind), ServerHintKey.Bool(e.FromServer))...))
		if e.Kind == transport.EventRetry {
			in.retries.Add(ctx, 1, metric.WithAttributes(append(host, ReasonKey.String(e.Reason))...))
		}
		if span.IsRecording() {
			attrs := []attribute.KeyValue{WaitKindKey.String(kind), AttemptKey.Int(e.Attempt),
				WaitKey.Float64(e.Delay.Seconds()), ServerHintKey.Bool(e.FromServer)}
			if e.Reason != "" {
				attrs = append(attrs, ReasonKey.String(e.Reason))
			}
			span.AddEvent("rebound.wait", trace.WithAttributes(attrs...))
		}
	case transport.EventHedge:
		in.hedges.Add(ctx, 1, metric.WithAttributes(host...))
		if span.IsRecording() {
			span.AddEvent("rebound.hedge", trace.WithAttributes(AttemptKey.Int(e.Attempt),
				WaitKey.Float64(e.Delay.Seconds())))
		}
	case transport.EventGiveUp:
		if gate := rebound.RefusalGate(e); gate != "" {
			in.refusals.Add(ctx, 1, metric.WithAttributes(append(host, GateKey.String(gate))...))
			if span.IsRecording() {
				attrs := []attribute.KeyValue{GateKey.String(gate), AttemptKey.Int(e.Attempt)}
				if e.Err != nil {
					attrs = append(attrs, attribute.String("error.message", e.Err.Error()))
				}
				span.AddEvent("rebound.refusal", trace.WithAttributes(attrs...))
			}
		}
		if e.Stop == transport.StopFinal && e.Err == nil && e.StatusCode >= 400 && e.StatusCode < 500 {
			return // the server's answer, not a failure
		}
		in.giveUps.Add(ctx, 1, metric.WithAttributes(append(host, StopKey.String(e.Stop))...))
		if span.IsRecording() {
			attrs := []attribute.KeyValue{StopKey.String(e.Stop), AttemptKey.Int(e.Attempt), ReasonKey.String(e.Reason)}
			if e.StatusCode != 0 {
				attrs = append(attrs, attribute.Int("http.response.status_code", e.StatusCode))
			}
			span.AddEvent("rebound.give_up", trace.WithAttributes(attrs...))
		}
	}
}

func (in *Instrumentation) breakerChanged(ch breaker.StateChange) {
	if ch.To == breaker.Open {
		in.trips.Add(context.Background(), 1, metric.WithAttributes(in.hosts.metricAttrs(hostname.Safe(ch.Host))...))
	}
}

// requestHost is server.address and server.port of req for a metric, in
// the canonical form rebound keys hosts by, bounded (see hostSet).
func (in *Instrumentation) requestHost(req *http.Request) []attribute.KeyValue {
	if req.URL == nil {
		return nil
	}
	return in.hosts.metricAttrs(hostname.FromURL(req.URL), req.URL.Scheme)
}

// Package reboundotel reports a rebound chain to OpenTelemetry: a client
// span per attempt and the http.client.request.duration metric, following
// the semantic conventions for HTTP clients, and rebound's own decisions
// (waits, refusals, give-ups, breaker state) as span events on the
// caller's span and as metrics.
//
// New builds the whole chain:
//
//	rt, err := reboundotel.New(nil, reboundotel.Config{}) // global providers
//	client := &http.Client{Transport: rt}
//
// It puts three pieces in place, which an Instrumentation also gives one by
// one for a chain assembled by hand:
//
//   - Base, the chain's base RoundTripper: one span per attempt that is
//     sent (a gate's refusal is not), a sibling of the call's other
//     attempts under the caller's span, with http.request.resend_count on
//     every attempt after the first; the trace context goes out in the
//     attempt's headers.
//   - Observer, a rebound.Observer: span events on the caller's span
//     ("rebound.wait" for each wait, with its duration and whether the
//     server asked for it; "rebound.refusal"; "rebound.give_up") and the
//     counters rebound.client.retries, rebound.client.give_ups,
//     rebound.client.refusals and rebound.client.breaker.trips.
//   - Watch, the gauge rebound.client.breaker.state of a Transport.
//
// Metrics name at most rebound.MaxStatsHosts hosts (the first seen), as
// rebound.Stats and the Prometheus collector do; the calls of any further
// host are reported under server.address "(other)" (rebound.OtherHost),
// so a client that calls user-supplied URLs keeps a bounded number of
// series.
//
// otelhttp.NewTransport placed outside the chain (wrapping the
// *rebound.Transport) makes a span per call, which becomes the caller's
// span: the attempts' spans are its children and rebound's events are
// on it. Placed as the base instead, it makes a span per attempt, as Base
// does (use one or the other there, not both).
package reboundotel

import (
	"context"
	"net/http"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/internal/hostname"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/rebound-http/rebound/otel"

// Config chooses the providers. The zero value uses the global ones
// (otel.GetTracerProvider, otel.GetMeterProvider and
// otel.GetTextMapPropagator).
type Config struct {
	// TracerProvider makes the attempt spans. Nil means the global one.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the instruments. Nil means the global one.
	MeterProvider metric.MeterProvider
	// Propagator writes the trace context into each attempt's headers.
	// Nil means the global one.
	Propagator propagation.TextMapPropagator
	// KnownMethods are the request methods reported as themselves in
	// http.request.method and the span name; any other method is
	// reported as "_OTHER", with http.request.method_original, and its
	// span is named "HTTP", as the semantic conventions require (they
	// bound the attribute's values). Nil means the conventions' default:
	// the methods of RFC 9110 (GET, HEAD, POST, PUT, DELETE, CONNECT,
	// OPTIONS, TRACE), PATCH (RFC 5789) and QUERY (RFC 10008). A non-nil
	// list replaces the default entirely, as the conventions'
	// OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS does (this package does
	// not read that variable). Methods match exactly (upper case, as
	// net/http sends them).
	KnownMethods []string
}

// Instrumentation holds the tracer and the instruments that Base,
// Observer and Watch report to. It is safe for concurrent use; make one
// with NewInstrumentation (the zero value is not usable).
type Instrumentation struct {
	tracer     trace.Tracer
	meter      metric.Meter
	propagator propagation.TextMapPropagator
	known      map[string]attribute.KeyValue // http.request.method of each known method

	duration  metric.Float64Histogram // http.client.request.duration
	waits     metric.Float64Histogram // rebound.client.wait.duration
	retries   metric.Int64Counter
	hedges    metric.Int64Counter
	giveUps   metric.Int64Counter
	refusals  metric.Int64Counter
	trips     metric.Int64Counter
	breakerSt metric.Int64ObservableGauge

	hosts hostSet // the hosts metrics name
}

// NewInstrumentation makes the tracer and the instruments from cfg's
// providers. It fails only when the meter provider refuses an instrument.
func NewInstrumentation(cfg Config) (*Instrumentation, error) {
	tp, mp, prop := cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	in := &Instrumentation{
		tracer:     tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		meter:      mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL)),
		propagator: prop,
		known:      defaultMethods,
	}
	if cfg.KnownMethods != nil {
		in.known = make(map[string]attribute.KeyValue, len(cfg.KnownMethods))
		for _, m := range cfg.KnownMethods {
			in.known[m] = semconv.HTTPRequestMethodKey.String(m)
		}
	}
	m := in.meter
	var err error
	if in.duration, err = m.Float64Histogram("http.client.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of HTTP client requests: one per attempt."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)); err != nil {
		return nil, err
	}
	if in.waits, err = m.Float64Histogram("rebound.client.wait.duration",
		metric.WithUnit("s"), metric.WithDescription("Waits before a retry (backoff, or the server's wait hint) and before a held host's attempt."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)); err != nil {
		return nil, err
	}
	if in.retries, err = m.Int64Counter("rebound.client.retries",
		metric.WithUnit("{retry}"), metric.WithDescription("Retries scheduled, by the reason the previous attempt failed.")); err != nil {
		return nil, err
	}
	if in.hedges, err = m.Int64Counter("rebound.client.hedges",
		metric.WithUnit("{attempt}"), metric.WithDescription("Hedged attempts sent (transport.Config.Hedge).")); err != nil {
		return nil, err
	}
	if in.giveUps, err = m.Int64Counter("rebound.client.give_ups",
		metric.WithUnit("{call}"), metric.WithDescription("Calls that ended on a failure, by why the retry loop stopped.")); err != nil {
		return nil, err
	}
	if in.refusals, err = m.Int64Counter("rebound.client.refusals",
		metric.WithUnit("{call}"), metric.WithDescription("Calls ended by a gate's refusal (breaker, budget, hold), unsent.")); err != nil {
		return nil, err
	}
	if in.trips, err = m.Int64Counter("rebound.client.breaker.trips",
		metric.WithUnit("{trip}"), metric.WithDescription("Times a host's circuit breaker opened.")); err != nil {
		return nil, err
	}
	if in.breakerSt, err = m.Int64ObservableGauge("rebound.client.breaker.state",
		metric.WithUnit("1"), metric.WithDescription("State of a host's circuit breaker: 0 closed, 1 open, 2 half-open.")); err != nil {
		return nil, err
	}
	return in, nil
}

// New returns rebound.New(base, opts...) reported to OpenTelemetry: Base
// as its base (a nil base means rebound's pooled default), Observer
// added to its observers, and its breakers watched (Watch).
func New(base http.RoundTripper, cfg Config, opts ...rebound.Option) (*rebound.Transport, error) {
	in, err := NewInstrumentation(cfg)
	if err != nil {
		return nil, err
	}
	rt, err := rebound.New(in.Base(base), append(opts[:len(opts):len(opts)], rebound.WithObserver(in.Observer()))...)
	if err != nil {
		return nil, err
	}
	if _, err := in.Watch(rt); err != nil {
		return nil, err
	}
	return rt, nil
}

// Watch reports rt's circuit breakers in the gauge
// rebound.client.breaker.state, one point per tracked host (server.address
// and server.port), read at each collection. Unregister the returned
// registration to stop.
func (in *Instrumentation) Watch(rt *rebound.Transport) (metric.Registration, error) {
	return in.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, h := range rt.Breakers() {
			o.ObserveInt64(in.breakerSt, int64(h.State), metric.WithAttributes(in.hosts.metricAttrs(hostname.Safe(h.Host))...))
		}
		return nil
	}, in.breakerSt)
}

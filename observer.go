package rebound

import (
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// Observer receives every decision of the chain, from all its links. Each
// field is optional; nil fields cost nothing. Functions are called
// synchronously, on the caller's goroutine, with no lock held; they must be
// safe for concurrent use and return quickly. The zero value observes
// nothing.
type Observer struct {
	// Retry receives the retry loop's events: attempts, scheduled retries
	// (delay, reason, whether the server asked for the wait) and give-ups.
	Retry func(transport.Event)
	// Breaker receives every state change of a host's circuit breaker,
	// with the host, the states and the reason.
	Breaker func(breaker.StateChange)
	// Budget receives every attempt the retry budget or the client-side
	// throttle refused, with the host and the budget's balance.
	Budget func(budget.Refusal)
}

// join returns an Observer that reports to o, then to p.
func (o Observer) join(p Observer) Observer {
	return Observer{
		Retry:   both(o.Retry, p.Retry),
		Breaker: both(o.Breaker, p.Breaker),
		Budget:  both(o.Budget, p.Budget),
	}
}

// both returns a function calling f then g, skipping nil ones.
func both[T any](f, g func(T)) func(T) {
	switch {
	case f == nil:
		return g
	case g == nil:
		return f
	}
	return func(v T) { f(v); g(v) }
}

// both2 is both for functions of two arguments.
func both2[T, U any](f, g func(T, U)) func(T, U) {
	switch {
	case f == nil:
		return g
	case g == nil:
		return f
	}
	return func(t T, u U) { f(t, u); g(t, u) }
}

// joinObservers returns an Observer calling a then b, skipping nil ones.
func joinObservers(a, b transport.Observer) transport.Observer {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return transport.ObserverFunc(func(e transport.Event) { a.Observe(e); b.Observe(e) })
}

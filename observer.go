package rebound

import (
	"time"

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
	// Operator receives what an operator did: isolations, resets and
	// reloads (see OperatorEvent).
	Operator func(OperatorEvent)
}

// join returns an Observer that reports to o, then to p.
func (o Observer) join(p Observer) Observer {
	return Observer{
		Retry:    both(o.Retry, p.Retry),
		Breaker:  both(o.Breaker, p.Breaker),
		Budget:   both(o.Budget, p.Budget),
		Operator: both(o.Operator, p.Operator),
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

// Operator actions, the Action of an OperatorEvent.
const (
	// ActionIsolate: Transport.Isolate isolated a host.
	ActionIsolate = "isolate"
	// ActionLift: an isolation ended before its time (Isolate with a
	// duration of zero, or Reset).
	ActionLift = "lift"
	// ActionExpire: an isolation ended at its time; reported by the first
	// call to the host after it.
	ActionExpire = "expire"
	// ActionReset: Transport.Reset forgot a host's state.
	ActionReset = "reset"
	// ActionReload: Transport.Reload replaced a policy's chain, kept it, or
	// failed (Err).
	ActionReload = "reload"
)

// OperatorEvent reports what an operator did to a Transport: an
// isolation, a reset or a reload. The zero value reports nothing.
type OperatorEvent struct {
	// Action is one of the Action constants.
	Action string
	// Host is the canonical URL host acted on; "" for a reload.
	Host string
	// Pattern is the host pattern of the policy a reload changed ("" for
	// the default policy), or of the host's policy for a reset.
	Pattern string
	// Until is when an isolation ends (ActionIsolate).
	Until time.Time
	// Reset names the state forgotten: for a reset, the parts that held
	// state ("breaker", "budget", "admission", "latency", "isolation");
	// for a reload, the links of a changed policy whose state could not
	// be kept. Empty when nothing was lost.
	Reset []string
	// Hosts are, for a reload, the hosts the changed or removed policy's
	// breakers tracked (at most 100): whose state Reset lists as lost;
	// and the hosts another policy served before that this one serves now
	// (a pattern added or removed): they start fresh under it, and Detail
	// says so.
	Hosts []string
	// Detail says in plain words what happened ("policy unchanged: state
	// kept", "policy removed", "invalid configuration: kept the old one").
	Detail string
	// Err is the error of a reload that failed; the old configuration
	// stays in force.
	Err error
}

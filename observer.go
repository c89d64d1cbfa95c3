package rebound

import (
	"context"
	"log/slog"

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

// LogObserver returns an Observer that logs to l (nil: slog.Default()):
// retries and circuits closing at Info, give-ups, circuits opening and
// refusals at Warn. Attempts are not logged.
func LogObserver(l *slog.Logger) Observer {
	if l == nil {
		l = slog.Default()
	}
	return Observer{
		Retry: func(e transport.Event) {
			host := ""
			if e.Request != nil && e.Request.URL != nil {
				host = e.Request.URL.Host
			}
			switch e.Kind {
			case transport.EventRetry:
				l.LogAttrs(context.Background(), slog.LevelInfo, "rebound: retry",
					slog.String("host", host), slog.Int("attempt", e.Attempt), slog.String("reason", e.Reason),
					slog.Duration("delay", e.Delay), slog.Bool("server_hint", e.FromServer))
			case transport.EventGiveUp:
				l.LogAttrs(context.Background(), slog.LevelWarn, "rebound: give up",
					slog.String("host", host), slog.Int("attempts", e.Attempt), slog.String("reason", e.Reason),
					slog.String("stop", e.Stop))
			}
		},
		Breaker: func(c breaker.StateChange) {
			level := slog.LevelWarn
			if c.To == breaker.Closed {
				level = slog.LevelInfo
			}
			l.LogAttrs(context.Background(), level, "rebound: circuit "+c.To.String(),
				slog.String("host", c.Host), slog.String("from", c.From.String()), slog.String("reason", c.Reason),
				slog.Duration("open_for", c.OpenFor))
		},
		Budget: func(r budget.Refusal) {
			l.LogAttrs(context.Background(), slog.LevelWarn, "rebound: budget refusal",
				slog.String("host", r.Host), slog.Bool("throttled", r.Throttled), slog.Float64("balance", r.Balance))
		},
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

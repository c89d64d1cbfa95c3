package rebound

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	canon "github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// LogObserver returns an Observer that logs to l (nil: slog.Default()).
//
//   - Retries and held attempts are logged at Info, one line each, with
//     the host, method and path (never the query string or userinfo), the
//     attempt, the reason and the wait as a readable duration ("1.2s").
//   - Give-ups are logged at Warn, except a final 4xx response (the server
//     answered; nothing failed), which is logged at Debug, with the stop
//     and, when the loop gives one, "why" in plain words (see
//     transport.Error.Why): the words the error and transport.Outcome
//     give. A first attempt's response the loop does not retry for any
//     method (a 404, a 501) is not a give-up, as transport.Outcome says:
//     it is logged at Debug as "final response, not retried". A retry
//     licensed only by the request's idempotency key carries why too,
//     saying whether the caller set the key or rebound generated it.
//   - Refusals (an open circuit, a host held by the server's wait hint, the
//     retry budget) are aggregated per host: the first refusal of a quiet
//     host is logged at once, then at most one line per host per second
//     says how many calls were refused in that second ("refused 1243 calls
//     in the last 1s", with a count per gate). A storm of refused calls
//     writes about one line a second, not one per call.
//   - A retry refused after attempts were sent (the budget, a circuit
//     that opened meanwhile, no turn before the deadline) is logged at
//     Warn as "rebound: retry refused", once per call, with the gate,
//     the attempts sent and the status returned: the retry its "rebound:
//     retry" line announced was not made.
//   - Every circuit state change is one line: Warn when it opens, Info
//     otherwise.
//   - What an operator did (Observer.Operator) is one line: an isolation
//     and a failed reload at Warn, a lifted or ended isolation, a reset
//     and each policy a reload changed at Info (one it kept unchanged at
//     Debug).
//
// Lines about a call are logged with the request's context, so handlers
// that add trace or request ids from the context keep them.
func LogObserver(l *slog.Logger) Observer {
	if l == nil {
		l = slog.Default()
	}
	agg := &refusalLog{l: l, every: time.Second}
	return Observer{
		Retry: func(e transport.Event) {
			ctx := context.Background()
			if e.Request != nil {
				ctx = e.Request.Context()
			}
			switch e.Kind {
			case transport.EventRetry, transport.EventHold:
				if e.Kind == transport.EventHold {
					l.LogAttrs(ctx, slog.LevelInfo, "rebound: waiting for a turn", append(requestAttrs(e.Request),
						slog.Int("attempt", e.Attempt), slog.String("limit", e.Limit.String()),
						slog.String("delay", e.Delay.String()))...)
					return
				}
				attrs := append(requestAttrs(e.Request),
					slog.Int("attempt", e.Attempt), slog.String("reason", e.Reason),
					slog.String("delay", e.Delay.String()), slog.Bool("server_hint", e.FromServer))
				if e.Why != "" {
					attrs = append(attrs, slog.String("why", e.Why))
				}
				l.LogAttrs(ctx, slog.LevelInfo, "rebound: retry", attrs...)
			case transport.EventGiveUp:
				if gate := refusedBy(e); gate != "" {
					if e.Attempt > 0 {
						retryRefused(ctx, l, gate, e)
						return
					}
					agg.refused(ctx, eventHost(e.Request), gate, e)
					return
				}
				level, msg := slog.LevelWarn, "rebound: give up"
				switch {
				case answered(e):
					// Handed back as it came: transport.Outcome
					// reports nothing given up, and so does the log.
					level, msg = slog.LevelDebug, "rebound: final response, not retried"
				case e.Err == nil && e.StatusCode >= 400 && e.StatusCode < 500 && e.Stop == transport.StopFinal:
					level = slog.LevelDebug
				}
				attrs := append(requestAttrs(e.Request), slog.Int("attempts", e.Attempt),
					slog.String("reason", e.Reason), slog.String("stop", e.Stop))
				if e.Why != "" {
					attrs = append(attrs, slog.String("why", e.Why))
				}
				if e.Err != nil {
					attrs = append(attrs, slog.String("error", e.Err.Error()))
				}
				l.LogAttrs(ctx, level, msg, attrs...)
			}
		},
		Breaker: func(c breaker.StateChange) {
			level := slog.LevelWarn
			if c.To != breaker.Open {
				level = slog.LevelInfo
			}
			attrs := []slog.Attr{slog.String("host", c.Host), slog.String("from", c.From.String()), slog.String("reason", c.Reason)}
			if c.OpenFor > 0 {
				attrs = append(attrs, slog.String("open_for", c.OpenFor.String()))
			}
			l.LogAttrs(context.Background(), level, "rebound: circuit "+c.To.String(), attrs...)
		},
		// Budget refusals reach the log through the loop's give-up event
		// of the refused call (refusedBy), counted once per call.
		Operator: func(ev OperatorEvent) { logOperator(l, ev) },
	}
}

// logOperator logs what an operator did: an isolation or a failed reload
// at Warn, the rest at Info.
func logOperator(l *slog.Logger, ev OperatorEvent) {
	level, msg := slog.LevelInfo, "rebound: "+ev.Action
	switch ev.Action {
	case ActionIsolate:
		level, msg = slog.LevelWarn, "rebound: host isolated"
	case ActionLift:
		msg = "rebound: isolation lifted"
	case ActionExpire:
		msg = "rebound: isolation ended"
	case ActionReset:
		msg = "rebound: host reset"
	case ActionReload:
		msg = "rebound: policy reloaded"
		if ev.Err == nil && ev.Detail == detailUnchanged {
			level = slog.LevelDebug
		}
		if ev.Err != nil {
			level, msg = slog.LevelWarn, "rebound: reload failed"
		}
	}
	var attrs []slog.Attr
	if ev.Host != "" {
		attrs = append(attrs, slog.String("host", ev.Host))
	}
	if ev.Action == ActionReload && ev.Err == nil || ev.Action == ActionReset {
		pattern := ev.Pattern
		if pattern == "" {
			pattern = "(default)"
		}
		attrs = append(attrs, slog.String("policy", pattern))
	}
	if !ev.Until.IsZero() && ev.Action == ActionIsolate {
		attrs = append(attrs, slog.Time("until", ev.Until))
	}
	if len(ev.Reset) > 0 {
		attrs = append(attrs, slog.Any("reset", ev.Reset))
	}
	if len(ev.Hosts) > 0 {
		attrs = append(attrs, slog.Any("hosts", ev.Hosts))
	}
	attrs = append(attrs, slog.String("detail", ev.Detail))
	if ev.Err != nil {
		attrs = append(attrs, slog.String("error", ev.Err.Error()))
	}
	l.LogAttrs(context.Background(), level, msg, attrs...)
}

// answered reports whether e ends a call whose first attempt's response
// was handed back as it came, a status the loop does not retry for any
// method (404, 501): nothing was given up.
func answered(e transport.Event) bool {
	return e.Err == nil && e.StatusCode != 0 && e.Attempt <= 1 && e.Stop == transport.StopFinal && e.Why == ""
}

// requestAttrs describes req without its query string or userinfo.
func requestAttrs(req *http.Request) []slog.Attr {
	if req == nil {
		return nil
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("host", eventHost(req)), slog.String("method", req.Method))
	if req.URL != nil {
		attrs = append(attrs, slog.String("path", req.URL.EscapedPath()))
	}
	return attrs
}

func eventHost(req *http.Request) string {
	if req == nil {
		return ""
	}
	return canon.FromURL(req.URL)
}

// refusedBy names the gate that refused the call e ends, or "" when e is
// not a refusal.
func refusedBy(e transport.Event) string {
	if e.Stop != transport.StopRefused && e.Stop != transport.StopHeld {
		return ""
	}
	switch {
	case errors.Is(e.Err, breaker.ErrOpen):
		return "breaker"
	case errors.Is(e.Err, budget.ErrExhausted), errors.Is(e.Err, budget.ErrThrottled):
		return "budget"
	case errors.Is(e.Err, ErrIsolated):
		return GateIsolated
	case e.Stop == transport.StopHeld, errors.Is(e.Err, transport.ErrHeld):
		switch e.Limit {
		case admission.LimitHint:
			return GateHint
		case admission.LimitQuota:
			return GateQuota
		}
		return GatePace
	}
	return "gate"
}

// maxLoggedHosts bounds the hosts refusalLog keeps a window for; refusals
// of further hosts are counted under "other".
const maxLoggedHosts = 1024

// refusalLog aggregates refusals per host: the first of a quiet host is
// logged at once and opens a window of length every; at the end of each
// window with refusals, one line gives their count and opens the next.
type refusalLog struct {
	l     *slog.Logger
	every time.Duration
	mu    sync.Mutex
	hosts map[string]*refusalWindow
}

type refusalWindow struct {
	byGate map[string]int
	total  int
}

func (a *refusalLog) refused(ctx context.Context, host, gate string, e transport.Event) {
	a.mu.Lock()
	if a.hosts == nil {
		a.hosts = make(map[string]*refusalWindow)
	}
	if _, ok := a.hosts[host]; !ok && len(a.hosts) >= maxLoggedHosts {
		host = "other"
	}
	if w, ok := a.hosts[host]; ok {
		w.byGate[gate]++
		w.total++
		a.mu.Unlock()
		return
	}
	a.hosts[host] = &refusalWindow{byGate: make(map[string]int)}
	a.mu.Unlock()
	time.AfterFunc(a.every, func() { a.flush(host) })

	attrs := append(requestAttrs(e.Request), slog.String("gate", gate), slog.String("stop", e.Stop))
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	a.l.LogAttrs(ctx, slog.LevelWarn, "rebound: refused", attrs...)
}

// retryRefused logs the end of a call whose retry a gate refused (or
// admission gave no turn before the deadline) after e.Attempt attempts
// were sent: the retry its "rebound: retry" line announced was not made,
// and the caller gets the last attempt's outcome, as transport.Outcome
// says. One line per call, as a give-up is: the call already logged its
// retry, so this at most doubles its lines, and a reader of that retry
// line finds what became of it.
func retryRefused(ctx context.Context, l *slog.Logger, gate string, e transport.Event) {
	attrs := append(requestAttrs(e.Request), slog.String("gate", gate),
		slog.Int("attempts", e.Attempt), slog.String("stop", e.Stop))
	if e.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", e.StatusCode)) // of the last attempt, returned
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	l.LogAttrs(ctx, slog.LevelWarn, "rebound: retry refused", attrs...)
}

// flush ends host's window: it logs the refusals counted in it and opens
// the next, or, when there were none, forgets the host.
func (a *refusalLog) flush(host string) {
	a.mu.Lock()
	w := a.hosts[host]
	if w == nil || w.total == 0 {
		delete(a.hosts, host)
		a.mu.Unlock()
		return
	}
	a.hosts[host] = &refusalWindow{byGate: make(map[string]int)}
	a.mu.Unlock()
	time.AfterFunc(a.every, func() { a.flush(host) })

	attrs := []slog.Attr{slog.String("host", host), slog.Int("count", w.total), slog.String("window", a.every.String())}
	for _, gate := range []string{"breaker", "hold", "budget", "gate"} {
		if n := w.byGate[gate]; n > 0 {
			attrs = append(attrs, slog.Int(gate, n))
		}
	}
	noun := " calls"
	if w.total == 1 {
		noun = " call"
	}
	a.l.LogAttrs(context.Background(), slog.LevelWarn,
		"rebound: refused "+strconv.Itoa(w.total)+noun+" in the last "+a.every.String(), attrs...)
}

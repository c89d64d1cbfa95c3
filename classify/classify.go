// Package classify decides, without any I/O, what an HTTP attempt's outcome
// means for the links of a rebound chain: whether to retry it, whether it
// counts against the server's health, and how long the server asked the
// client to wait.
//
// Everything here is a pure function of a request, a response, an error and,
// for wait hints, an injected instant, so it is table-tested without fakes
// and safe for concurrent use.
package classify

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rebound-http/rebound/internal/learnedcut"
)

// Outcome is what an attempt's result means for the retry loop.
// The zero value is Success.
type Outcome uint8

const (
	// Success: hand the result to the caller.
	Success Outcome = iota
	// Retryable: a transient failure; another attempt may succeed and is
	// safe to send.
	Retryable
	// Final: a failure that another attempt would not fix, or that is not
	// safe to repeat; hand it to the caller.
	Final
)

// String returns "success", "retryable" or "final".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Retryable:
		return "retryable"
	case Final:
		return "final"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Verdict is the classification of one attempt. The zero value is a
// success with no reason.
type Verdict struct {
	// Outcome says whether to retry.
	Outcome Outcome
	// Reason is a short, stable, machine-readable cause such as
	// "status 503", "connection refused", "timeout" or "tls". It is one of
	// a fixed set of strings (see the Reason constants and StatusReason),
	// so observers can use it as a metric label.
	Reason string
	// NotSent reports that the request provably never reached the server:
	// a dial-phase error or a gate's refusal. Such an attempt is safe to
	// repeat whatever the method.
	NotSent bool
}

// Reasons for transport errors. Status reasons come from StatusReason.
const (
	ReasonOK                = "ok"
	ReasonNotSent           = "not sent"
	ReasonCanceled          = "canceled"
	ReasonDeadline          = "deadline exceeded"
	ReasonTimeout           = "timeout"
	ReasonRefused           = "connection refused"
	ReasonReset             = "connection reset"
	ReasonEOF               = "unexpected eof"
	ReasonDial              = "dial"
	ReasonDNS               = "dns"
	ReasonHTTP2             = "http2"
	ReasonTLS               = "tls"
	ReasonInvalidRequest    = "invalid request"
	ReasonRequestBody       = "request body"
	ReasonRedirects         = "too many redirects"
	ReasonTransport         = "transport error"
	ReasonNotIdempotent     = "not idempotent"
	ReasonNotIdempotentResp = "not idempotent, may have been processed"
	// ReasonServerAdvised is the reason of a retryable status the server
	// said not to retry (X-Should-Retry: false, Stripe-Should-Retry:
	// false; see ServerAdvice).
	ReasonServerAdvised = "server advised no retry"
	// ReasonCustom is the reason of a verdict that a user's rule (the
	// retry loop's decision hook, transport.DecideFunc) changed without
	// naming a reason of its own.
	ReasonCustom = "custom rule"
)

// Statuses is a set of HTTP status codes in [100, 599], stored as a bitmap
// so a lookup costs a shift and a mask. The zero value is the empty set.
type Statuses struct{ bits [10]uint64 }

// NewStatuses returns the set of the given codes. Codes outside [100, 599]
// are ignored.
func NewStatuses(codes ...int) Statuses {
	var s Statuses
	for _, c := range codes {
		if c >= 100 && c <= 599 {
			s.bits[c>>6] |= 1 << (uint(c) & 63)
		}
	}
	return s
}

// Has reports whether code is in the set.
func (s *Statuses) Has(code int) bool {
	if code < 100 || code > 599 {
		return false
	}
	return s.bits[code>>6]&(1<<(uint(code)&63)) != 0
}

// DefaultRetryable is the set of statuses retried by default: 408, 429, 500,
// 502, 503 and 504. 501 and every other status are final.
var DefaultRetryable = NewStatuses(
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
)

// Classifier classifies attempts. The zero value uses DefaultRetryable and
// is ready to use; a Classifier is never modified by its methods and is
// safe for concurrent use.
type Classifier struct {
	// Retryable is the set of retryable statuses. Nil means
	// DefaultRetryable.
	Retryable *Statuses
}

// Classify returns the verdict for one attempt of req, which returned resp
// or err. req is the caller's request: its context decides whether an error
// is the caller's own cancellation, its method and headers whether a repeat
// is safe.
//
// Rules, in order:
//   - an error after the caller's context ended is final ("canceled" or
//     "deadline exceeded");
//   - a refusal by a gate (errors.Is(err, ErrNotSent)) is final and NotSent:
//     the retry loop stops there;
//   - other errors are retryable when transient (see ErrorReason) and either
//     the request is idempotent or it provably was not sent; TLS
//     certificate, invalid-request and redirect errors are final;
//   - a 2xx or 3xx status, or any status outside the retryable set, is
//     Success below 400 and Final from 400;
//   - 429 is retryable for every method (the server did not process it);
//   - 409 is retryable only for a request with an idempotency key (the
//     IETF draft's "a request with this key is still in flight");
//   - any other retryable status is retried only for idempotent requests;
//   - a retryable status whose response says not to retry (ServerAdvice:
//     X-Should-Retry or Stripe-Should-Retry "false") is final, reason
//     ReasonServerAdvised. Advice to retry licenses nothing the rules
//     above refuse: a POST is not made safe to repeat by it.
func (c *Classifier) Classify(req *http.Request, resp *http.Response, err error) Verdict {
	if err != nil {
		return classifyError(req, err)
	}
	if resp == nil {
		return Verdict{Outcome: Final, Reason: ReasonTransport}
	}
	code := resp.StatusCode
	set := c.Retryable
	if set == nil {
		set = &DefaultRetryable
	}
	switch {
	case !set.Has(code) && code != http.StatusConflict:
		if code < 400 {
			return Verdict{Outcome: Success, Reason: ReasonOK}
		}
		return Verdict{Outcome: Final, Reason: StatusReason(code)}
	case len(resp.Header) > 0 && advisedNot(resp.Header):
		return Verdict{Outcome: Final, Reason: ReasonServerAdvised}
	case code == http.StatusConflict && req != nil && HasIdempotencyKey(req.Header):
		return Verdict{Outcome: Retryable, Reason: StatusReason(code)}
	case !set.Has(code):
		return Verdict{Outcome: Final, Reason: StatusReason(code)}
	case code == http.StatusTooManyRequests || Idempotent(req):
		return Verdict{Outcome: Retryable, Reason: StatusReason(code)}
	default:
		return Verdict{Outcome: Final, Reason: StatusReason(code)}
	}
}

// ServerAdvice reports the server's explicit advice on retrying this
// request, from X-Should-Retry (sent by several API providers and honoured
// by their SDKs) or Stripe-Should-Retry: retry is the advice, ok whether
// either header said "true" or "false" (case-insensitive; anything else is
// no advice).
func ServerAdvice(h http.Header) (retry, ok bool) {
	for _, name := range [...]string{"X-Should-Retry", "Stripe-Should-Retry"} {
		if v := h[name]; len(v) > 0 {
			switch {
			case strings.EqualFold(strings.TrimSpace(v[0]), "true"):
				return true, true
			case strings.EqualFold(strings.TrimSpace(v[0]), "false"):
				return false, true
			}
		}
	}
	return false, false
}

// advisedNot reports whether h advises against a retry.
func advisedNot(h http.Header) bool {
	retry, ok := ServerAdvice(h)
	return ok && !retry
}

// Classify classifies with the zero Classifier (the default statuses).
func Classify(req *http.Request, resp *http.Response, err error) Verdict {
	var c Classifier
	return c.Classify(req, resp, err)
}

// statusReasons holds "status NNN" for every code in [100, 599], built once
// so that a verdict never allocates.
var statusReasons = func() (r [500]string) {
	for i := range r {
		r[i] = "status " + strconv.Itoa(i+100)
	}
	return r
}()

// StatusReason returns "status NNN" for code, without allocating for codes
// in [100, 599]; other codes read "status other".
func StatusReason(code int) string {
	if code < 100 || code > 599 {
		return "status other"
	}
	return statusReasons[code-100]
}

// Health is what an attempt says about the server's health, for circuit
// breakers and client-side throttling. The zero value is Healthy.
type Health uint8

const (
	// Healthy: the server answered with a status below 500.
	Healthy Health = iota
	// Unhealthy: a network error or a 5xx status without a wait hint.
	Unhealthy
	// Neutral: the attempt says nothing about the server: the caller
	// cancelled, a gate refused it, the request itself was invalid, its
	// body could not be read, or a 5xx carried a wait hint.
	Neutral
)

// String returns "healthy", "unhealthy" or "neutral".
func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	case Neutral:
		return "neutral"
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}

// deadlinePassed reports whether ctx ended because its deadline passed. A
// context can read as cancelled although its deadline has passed:
// http.Client.Timeout cancels the request's context from its own timer,
// which can fire just before the context's deadline timer does.
func deadlinePassed(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// ServerHealth says what an attempt of req, which returned resp or err,
// tells about the server: 5xx and network errors are Unhealthy, any other
// status (including 4xx and 429: a server that refuses politely is up) is
// Healthy, and the caller's own cancellation, a gate's refusal, an invalid
// request or a body the caller could not deliver are Neutral.
//
// Backpressure is not failure: a 5xx that carries a wait hint (see
// WaitHint: Retry-After, RateLimit, X-RateLimit-Reset) comes from a live
// server asking for time, such as a rate limiter answering 503 +
// Retry-After, and is Neutral, so it never trips a circuit breaker nor
// counts as an accepted request for a client-side throttle. A 4xx with a
// hint stays Healthy.
//
// A deadline that ends an attempt still waiting for the server is
// Unhealthy: the caller's deadline, or the retry loop's per-attempt timeout.
// A server that accepts connections and never answers is the commonest
// outage, and callers that bound every call with a deadline (as they
// should) would otherwise never let a circuit breaker see it. A caller's
// cancellation (context.Canceled) is not: it says nothing of the server.
//
// Nor is the caller's deadline ending an attempt that follows a learned
// cut (the retry loop marks its context): an earlier attempt of its call
// was cut by a timeout the client learned from the host's latency, a
// guess, so the time the deadline left this one was cut short by the
// client, not refused by the server. It is Neutral. A host that merely became slower must not trip
// its breaker on the cuts of a timeout learned when it was fast; a host
// that stops answering still counts, on the attempts the learned timeout
// no longer cuts (the retry loop suspends it after a streak of cuts, see
// transport.LearnedTimeoutConfig). An attempt timeout the caller set
// (ErrAttemptTimeout) is a limit, not a guess, and stays Unhealthy.
// An attempt whose context had already ended before it was sent should not
// be counted at all; the breaker checks for that before sending.
func ServerHealth(req *http.Request, resp *http.Response, err error) Health {
	if err != nil {
		if attemptTimedOut(req) || errors.Is(err, ErrAttemptTimeout) {
			return Unhealthy
		}
		switch ErrorReason(err) {
		case ReasonNotSent, ReasonInvalidRequest, ReasonRedirects, ReasonRequestBody:
			return Neutral
		}
		if req != nil && RequestProblem(req) != "" {
			return Neutral
		}
		if req != nil {
			if ctx := req.Context(); ctx.Err() != nil {
				if deadlinePassed(ctx) && !learnedcut.Marked(ctx) {
					return Unhealthy
				}
				return Neutral
			} else if deadlinePassed(ctx) && learnedcut.Marked(ctx) {
				return Neutral // the deadline's timer has yet to end ctx
			}
		}
		if errors.Is(err, context.Canceled) {
			return Neutral // an inner link cancelled on its own
		}
		return Unhealthy
	}
	if resp == nil {
		return Unhealthy
	}
	if resp.StatusCode >= 500 {
		if _, ok := WaitHint(resp.Header, time.Now()); ok {
			return Neutral
		}
		return Unhealthy
	}
	return Healthy
}

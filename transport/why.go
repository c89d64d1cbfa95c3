package transport

import (
	"net/http"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/keymark"
)

// Why a call ended, in words a user can act on: the loop puts one of these
// in Error.Why, Event.Why and the stop that Outcome reports, when the Stop
// label alone ("final outcome", "attempts exhausted") does not say what
// happened or what to change. Each is a fixed string: no times, counts or
// hosts, so errors group by kind.
const (
	// WhyNotRepeated: a request whose method is not idempotent (POST,
	// PATCH) and that carries no idempotency key failed in a way that
	// would have been retried for an idempotent method; it may have been
	// processed, so it was not sent again.
	WhyNotRepeated = "not repeated: a non-idempotent request without an idempotency key (see Policy.KeysHonored)"
	// WhyNotRepeatedKey: as WhyNotRepeated, but the request had a key
	// under the lower-case header name, which is how rebound sends a key
	// toward a host not declared keys_honored: the key went out but
	// licensed no repeat.
	WhyNotRepeatedKey = "not repeated: a non-idempotent request to a host not declared keys_honored (see Policy.KeysHonored)"
	// WhyCallerDeadline: the caller's deadline (its context, or
	// http.Client.Timeout) ended an attempt that was still waiting, and
	// the call had no attempt timeout that could have cut it and retried.
	WhyCallerDeadline = "the caller's deadline; set Retry.AttemptTimeout to retry hung attempts"
	// WhyCallerDeadlineCut: the caller's deadline ended an attempt,
	// although an attempt timeout was set.
	WhyCallerDeadlineCut = "the caller's deadline"
	// WhyCanceled: the caller cancelled the call during an attempt.
	WhyCanceled = "canceled by the caller"
	// WhyOneAttempt: the outcome was retryable, but the call allowed a
	// single attempt (Config.MaxAttempts 1, or NoRetry for the call).
	WhyOneAttempt = "no retry: one attempt allowed (MaxAttempts 1 or NoRetry)"
	// WhyCallerKey is the Why of an EventRetry of a POST or PATCH whose
	// repeat is licensed only by the idempotency key the caller set (in
	// the header, or with idempotency.WithKey): the caller vouches that
	// the server deduplicates by it.
	WhyCallerKey = "licensed by the caller's Idempotency-Key"
	// WhyGeneratedKey is the Why of an EventRetry of a POST or PATCH whose
	// repeat is licensed only by the key the client link generated toward
	// a host declared keys_honored (idempotency.Config.KeysHonored,
	// Policy.KeysHonored): the configuration vouches for the server.
	WhyGeneratedKey = "licensed by a generated Idempotency-Key toward a host declared keys_honored"
)

// why returns the words for a call of req that ends on cur after attempts
// attempts with stop, or "" when the Stop label says enough.
func (t *Transport) why(req *http.Request, cur outcome, attempts int, stop string) string {
	if req == nil {
		return ""
	}
	switch stop {
	case StopAttempts:
		if attempts == 1 {
			return WhyOneAttempt
		}
	case StopFinal:
		switch cur.verdict.Reason {
		case classify.ReasonDeadline:
			timeout := t.cfg.AttemptTimeout
			if perCallUsed.Load() {
				_, timeout = callSettings(req.Context(), t.cfg.MaxAttempts, timeout)
			}
			if timeout > 0 || t.cfg.LearnedTimeout != nil {
				return WhyCallerDeadlineCut
			}
			return WhyCallerDeadline
		case classify.ReasonCanceled:
			return WhyCanceled
		}
		if cur.verdict.Outcome == classify.Final && t.wouldRepeat(req, cur) {
			if lowerKey(req.Header) {
				return WhyNotRepeatedKey
			}
			return WhyNotRepeated
		}
	}
	return ""
}

// wouldRepeat reports whether req, a request the loop does not repeat,
// was refused a retry only for its method: its outcome would have been
// retryable for an idempotent method.
func (t *Transport) wouldRepeat(req *http.Request, cur outcome) bool {
	if classify.Idempotent(req) {
		return false
	}
	if cur.err == nil {
		// A status outside the retryable set is final for every
		// method: no need to ask again (nor to allocate).
		set := t.cfg.Classifier.Retryable
		if set == nil {
			set = &classify.DefaultRetryable
		}
		if cur.resp == nil || !set.Has(cur.resp.StatusCode) {
			return false
		}
	}
	probe := new(http.Request)
	*probe = *req
	probe.Method = http.MethodPut
	return t.cfg.Classifier.Classify(probe, cur.resp, cur.err).Outcome == classify.Retryable
}

// lowerKey reports whether h carries an idempotency key under a lower-case
// name, which licenses no repeat (see classify.HasIdempotencyKey).
func lowerKey(h http.Header) bool {
	if _, ok := h["idempotency-key"]; ok {
		return true
	}
	_, ok := h["x-idempotency-key"]
	return ok
}

// retryWhy returns the Why of an EventRetry of req when only its key
// licenses the repeat: WhyGeneratedKey when the client link generated it
// (its mark in the context, keymark), else WhyCallerKey.
func retryWhy(req *http.Request, cur outcome) string {
	if req == nil || classify.IdempotentMethod(req.Method) || !classify.HasIdempotencyKey(req.Header) {
		return ""
	}
	if cur.verdict.NotSent || (cur.resp != nil && cur.resp.StatusCode == http.StatusTooManyRequests) {
		return "" // repeated as a keyless request would be
	}
	if keymark.Generated(req.Context(), headerKey(req.Header)) {
		return WhyGeneratedKey
	}
	return WhyCallerKey
}

// headerKey returns the key that licenses a repeat of a request with
// header h: its Idempotency-Key, else its X-Idempotency-Key.
func headerKey(h http.Header) string {
	if vs := h[classify.HeaderIdempotencyKey]; len(vs) > 0 && vs[0] != "" {
		return vs[0]
	}
	if vs := h[classify.HeaderXIdempotencyKey]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

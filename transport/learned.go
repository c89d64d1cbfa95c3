package transport

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// Defaults of a LearnedTimeoutConfig's zero fields.
const (
	DefaultLearnedQuantile   = 0.99
	DefaultLearnedMultiplier = 3
	DefaultLearnedMin        = 200 * time.Millisecond
	DefaultLearnedMax        = time.Minute
	DefaultLearnedSamples    = 100
)

// LearnedTimeoutConfig configures attempt timeouts learned from the host's
// own latency (Config.LearnedTimeout). An attempt that has waited for its
// response headers far longer than the host usually takes, Multiplier
// times the Quantile of its recent attempts' latency (never below
// MinTimeout nor above MaxTimeout), is cancelled and retried, instead of
// spending the caller's whole deadline on a stalled connection or a lost
// request.
//
// A learned timeout cuts only an attempt that can be retried: a request
// safe to repeat (classify.Idempotent: an idempotent method, or a key that
// licenses a repeat) that is not the call's last attempt; the last attempt
// waits as long as the configured bounds allow. Until the host has
// MinSamples recent attempts, Config.AttemptTimeout (or none) applies;
// afterwards the learned timeout applies when it is shorter than
// Config.AttemptTimeout, which stays an upper bound. A timeout set for one
// call with WithAttemptTimeout replaces both.
//
// An attempt cut by a learned timeout fails with an error matching
// classify.ErrAttemptTimeout, and is retried like any timeout. It does not
// count against the host's health (the breaker and the budget's throttle
// see it as neutral): a limit inferred from statistics is a guess, and a
// host that has merely become slower must not be tripped by it. Nor does
// the caller's deadline ending a later attempt of the same call: the cut
// spent the time that attempt lacked (see classify.ServerHealth). A host
// that stops answering still trips its breaker: once the streak below
// suspends the learned timeout, first attempts wait out the deadline
// uncut, and count (TestLearnedTimeoutBlackHoleStillTripsBreaker: within
// a second, 40 callers with 450 ms deadlines).
//
// Nor does the timeout stop learning when a host slows down. Three kinds
// of evidence keep it up to date:
//
//   - the histogram of answered attempts (the time to response headers),
//     kept over one to two windows of 1,000 attempts or one minute,
//     whichever ends first: a window also ends on time when only cut
//     attempts come;
//   - a floor: the learned timeout is never below twice the longest
//     answer any attempt got in the last 5 to 10 s (an attempt that was
//     not cut: the last of a call, or one within the timeout), so once a
//     slower answer has come, attempts as slow are no longer cut;
//   - a cut attempt, or one ended by its caller's deadline, is a censored
//     sample: the host took at least that long. It is not put in the
//     histogram (a host stalling a share of its connections, the fault
//     learned timeouts are for, would raise its own timeout with every
//     cut); but 16 censored attempts in a row, with no answer between,
//     over at least the learned timeout (so a pause of the client, which
//     cuts every attempt in flight at once, is not one), mean the host is
//     slower than the timeout for everyone, not stalling some
//     connections: the learned timeout is suspended (Config.
//     AttemptTimeout alone applies) for 5 to 10 s, while the answers of
//     the uncut attempts set the floor and fill the histogram. A host
//     stalling half its connections makes such a streak once in 65,536
//     attempts; one stalling 30 %, once in 2·10⁸.
//
// Measured (TestLearnedTimeoutKeepsLearningAfterShift, 20 workers, the
// default settings, deadlines 1.5 times the new latency): after a host
// goes from 10 ms to 300 ms, or to 2 s, every call started 2 s after the
// shift succeeds, and over the shift's first ten new latencies the host
// sees 1.09 (300 ms) and 1.19 (2 s) attempts per call (the calls in
// flight at the shift pay one or two cut attempts each). Called one at a time, a host ten times slower than it
// was is cut on one call (its first three attempts; its last, uncut,
// answers and sets the floor), then not again
// (TestLearnedTimeoutFollowsSlowerHost).
//
// The zero value is the default of every field.
type LearnedTimeoutConfig struct {
	// Quantile of the host's recent attempt latencies the timeout is
	// learned from, in (0, 1). Zero means 0.99.
	Quantile float64
	// Multiplier of that quantile, at least 1. Zero means 3.
	Multiplier float64
	// MinTimeout is the shortest learned timeout, so that scheduling and
	// garbage-collection pauses do not cut attempts to a host answering in
	// microseconds. Zero means 200 ms.
	MinTimeout time.Duration
	// MaxTimeout is the longest learned timeout. Zero means one minute.
	MaxTimeout time.Duration
	// MinSamples is how many recent attempts of a host are needed before
	// its timeout is learned. Zero means 100.
	MinSamples int
}

// normalize returns c with defaults in place of zero (or meaningless)
// values.
func (c LearnedTimeoutConfig) normalize() *LearnedTimeoutConfig {
	if !(c.Quantile > 0 && c.Quantile < 1) {
		c.Quantile = DefaultLearnedQuantile
	}
	if !(c.Multiplier >= 1) || math.IsInf(c.Multiplier, 0) {
		c.Multiplier = DefaultLearnedMultiplier
	}
	if c.MinTimeout <= 0 {
		c.MinTimeout = DefaultLearnedMin
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultLearnedMax
	}
	c.MaxTimeout = max(c.MaxTimeout, c.MinTimeout)
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultLearnedSamples
	}
	return &c
}

// errLearnedTimeout is the cause of an attempt's context when a learned
// timeout ended it. It does not match classify.ErrAttemptTimeout, so the
// links inside the loop (the breaker) see the attempt as cancelled
// (neutral); the loop itself reports the attempt's error as a timeout.
var errLearnedTimeout = errors.New("transport: attempt exceeded the host's learned timeout")

// timeoutSetForCall reports whether the call with this request set its
// attempt timeout with WithAttemptTimeout.
func timeoutSetForCall(req *http.Request) bool {
	if !perCallUsed.Load() {
		return false
	}
	o, ok := req.Context().Value(callKey{}).(*callOptions)
	return ok && o.timeoutSet
}

// attemptLimit returns the timeout of attempt n of req toward the host
// tracked by h, and the cause its expiry sets: a learned timeout when one
// applies (see LearnedTimeoutConfig), else the configured one.
func (t *Transport) attemptLimit(req *http.Request, h *hostLatency, n, maxAttempts int, configured time.Duration) (time.Duration, error) {
	l := t.lat
	if l.timeout == nil || n >= maxAttempts || !classify.Idempotent(req) || timeoutSetForCall(req) {
		return configured, classify.ErrAttemptTimeout
	}
	learned := l.learnedTimeout(h)
	if learned <= 0 || configured > 0 && configured <= learned {
		return configured, classify.ErrAttemptTimeout
	}
	return learned, errLearnedTimeout
}

// sendTracked sends attempt n (out) of req, timing it for its host, and
// applies a learned timeout (see LearnedTimeoutConfig).
func (t *Transport) sendTracked(req, out *http.Request, h *hostLatency, n, maxAttempts int, configured time.Duration) (*http.Response, error) {
	timeout, cause := t.attemptLimit(req, h, n, maxAttempts, configured)
	began := mono()
	resp, err := t.sendCause(out, timeout, cause)
	if resp != nil {
		t.lat.observe(h, resp, began)
	} else if err != nil && (timeout > 0 && errors.Is(err, classify.ErrAttemptTimeout) || req.Context().Err() == context.DeadlineExceeded) {
		// Cut by a timeout, or ended by the caller's deadline: the
		// host takes at least this long.
		now := mono()
		t.lat.censored(h, now-began, now)
	}
	return resp, err
}

// cutByLearned reports whether err, an attempt's error, says a learned
// timeout cut the attempt. The loop then marks the call's later attempts
// with learnedcut.Mark: the caller's deadline ending one of them
// does not count against the host (see classify.ServerHealth), since the
// time it left them was shortened by the cut, a guess.
func cutByLearned(err error) bool {
	return errors.Is(err, errLearnedTimeout)
}

// observe records the latency of an attempt sent at began that returned
// resp: the time to its response headers. An attempt that ended on an
// error says nothing of the host's latency; one cut by a timeout or ended
// by its caller's deadline only that it took longer (see censored).
func (l *latencies) observe(h *hostLatency, resp *http.Response, began int64) {
	if h == nil || resp == nil {
		return
	}
	now := mono()
	l.record(h, now-began, now)
}

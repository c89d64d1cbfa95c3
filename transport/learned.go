package transport

import (
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
// host that has merely become slower must not be tripped by it. Nor is it
// cut short forever: the last attempt of each call is never cut, so the
// host's new latency is learned from those, and once a hundredth of the
// recent attempts are slower the timeout follows them (measured: a host
// ten times slower than it was is cut on two calls, then not again).
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
	t.lat.observe(h, resp, began)
	return resp, err
}

// observe records the latency of an attempt sent at began that returned
// resp: the time to its response headers. An attempt that ended on an
// error says nothing of the host's latency, and one cut by a timeout only
// that it took longer; counting the cut ones at their timeout would let a
// host stalling a share of its connections (the fault learned timeouts are
// for) raise its own timeout by Multiplier with every hundredth cut.
func (l *latencies) observe(h *hostLatency, resp *http.Response, began int64) {
	if h == nil || resp == nil {
		return
	}
	now := mono()
	l.record(h, now-began, now)
}

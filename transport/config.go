package transport

import (
	"net/http"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/classify"
)

// Defaults applied by New to the zero fields of a Config.
const (
	DefaultMaxAttempts      = 4
	DefaultBaseDelay        = 100 * time.Millisecond
	DefaultMaxDelay         = 10 * time.Second
	DefaultMaxRetryAfter    = 60 * time.Second
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxResponseBytes = 1 << 20
)

// Jitter selects how backoff waits are randomised. The zero value is
// FullJitter.
type Jitter uint8

const (
	// FullJitter waits a uniform random time in [0, min(MaxDelay,
	// BaseDelay·2^(n-1))) before retry n. It spreads a fleet's retries the
	// most evenly (Brooker, "Exponential Backoff and Jitter").
	FullJitter Jitter = iota
	// DecorrelatedJitter waits uniform[BaseDelay, min(MaxDelay, 3·previous
	// wait)), growing from the previous wait rather than the attempt number.
	DecorrelatedJitter
)

// Config is the retry loop's configuration. The zero value is the documented
// default of every field; New normalises it and never modifies the caller's
// copy.
type Config struct {
	// MaxAttempts is the most attempts per call, the first included.
	// Zero means 4 (3 retries); 1 disables retrying; negative means 1.
	// WithAttempts and NoRetry change it for one call.
	MaxAttempts int

	// BaseDelay is the first backoff ceiling. Zero means 100 ms; negative
	// means no backoff: a retry follows at once (a server's wait hint is
	// still honoured).
	BaseDelay time.Duration
	// MaxDelay caps every backoff wait. Zero means 10 s.
	MaxDelay time.Duration
	// Jitter selects the backoff algorithm. The zero value is FullJitter.
	Jitter Jitter

	// MaxRetryAfter caps the wait a server may ask for (Retry-After and
	// rate-limit headers, see classify.WaitHint). A larger request ends the
	// loop at once and hands its response to the caller, rather than being
	// ignored or silently shortened. Zero means 60 s; negative means no
	// wait at all: any hint longer than zero ends the loop.
	MaxRetryAfter time.Duration
	// DisablePacing stops admission from pacing a host by the quota it
	// announces (RateLimit, X-RateLimit-Remaining headers); see package
	// admission. The zero value paces hosts that send those headers.
	DisablePacing bool
	// DisableAdaptivePace stops admission from learning a pace from a
	// host's throttling (429, or a retryable status with a wait hint,
	// while it admits other requests); see package admission. A throttle
	// with a hint still pauses its host when nothing was admitted. The
	// zero value learns the pace.
	DisableAdaptivePace bool
	// AdaptiveRate is ignored: admission learns every throttled host's
	// pace by default (see DisableAdaptivePace).
	//
	// Deprecated: the adaptive pace is on by default; this field will be
	// removed.
	AdaptiveRate bool
	// AdmissionKey, when non-nil, names the caller partition of a request
	// within its host for admission: requests with the same key share one
	// pace (their 429s, their quota). Nil means a digest of the request's
	// credentials (Authorization, Proxy-Authorization, Cookie, X-Api-Key,
	// Api-Key, X-Auth-Token). See admission.Config.Key.
	AdmissionKey func(*http.Request) string
	// DisableWaitHints makes the loop ignore the server's wait headers and
	// always use backoff. The zero value honours them.
	DisableWaitHints bool

	// NoWait makes every wait of the loop zero, for tests: a retry follows
	// its failure at once, whether backoff or the server's wait hint would
	// have timed it, and a hint holds no host. Every decision stays as
	// without it: the same attempts, the same outcomes retried, a hint
	// over MaxRetryAfter still ends the loop, and events still say that a
	// retry honours the server's hint (FromServer), with a Delay of zero.
	// Package reboundtest sets it on every policy of a rebound chain. The
	// zero value waits.
	NoWait bool

	// MaxBodyBytes bounds how much of a request body without GetBody is
	// recorded, while it streams out, for replay. A larger body is sent
	// once and its call is not retried. Zero means 1 MiB; negative disables
	// recording (such bodies are never retried).
	MaxBodyBytes int64
	// MaxResponseBytes bounds how much of a retryable response's body is
	// buffered before its connection is released for the next attempt, so
	// the response can still be returned if the loop stops. A response with
	// a larger body is handed to the caller at once, unread, instead of
	// being retried. Zero means 1 MiB.
	MaxResponseBytes int64

	// AttemptTimeout, when positive, bounds each attempt's wait for
	// response headers. It cancels only that attempt (which is then a
	// retryable timeout); the body of a response handed to the caller is
	// never cut off by it. It also bounds, afresh, the reading of the body
	// of a response the loop buffers in order to retry (a 503 whose body
	// stalls): that attempt's body then ends early with an error matching
	// classify.ErrAttemptTimeout, and the loop goes on. Zero means no
	// per-attempt limit: only the caller's context bounds an attempt,
	// including the reading of a retried response's body. The body of a
	// 101 Switching Protocols response, the upgraded connection, is handed
	// over untouched, an io.ReadWriteCloser whatever AttemptTimeout is.
	// WithAttemptTimeout changes it for one call.
	AttemptTimeout time.Duration

	// Hedge, when non-nil, turns on hedged requests: an attempt of a
	// request safe to repeat that has not answered after a delay learned
	// from its host's latency (or a fixed one) is joined by another, in
	// parallel, and the first usable answer wins. See HedgeConfig, whose
	// zero value is the default. Nil, the default, never hedges and costs
	// nothing.
	Hedge *HedgeConfig
	// LearnedTimeout, when non-nil, turns on attempt timeouts learned from
	// the host's latency: an attempt that has waited far longer than the
	// host usually takes is cancelled and retried. See
	// LearnedTimeoutConfig, whose zero value is the default. Nil, the
	// default, learns nothing and costs nothing.
	LearnedTimeout *LearnedTimeoutConfig

	// Classifier decides which outcomes are retryable. Nil means the zero
	// classify.Classifier (statuses 408, 429, 500, 502, 503, 504).
	Classifier *classify.Classifier

	// Decide, when non-nil, is asked about every attempt's outcome after
	// the Classifier and returns the verdict the loop acts on: a user's
	// rule on top of the defaults (retry a 200 whose body says "pending",
	// a 403 with X-Retryable: true; never retry a path). See DecideFunc,
	// and PeekBody for reading the body while leaving it whole. A Retryable
	// verdict is acted on whatever the method: the hook's author vouches
	// that the repeat is safe. Nil keeps the Classifier's verdict and costs
	// nothing.
	Decide DecideFunc

	// Observer, when non-nil, receives an Event for every attempt, every
	// scheduled retry and every give-up. Nil costs nothing.
	Observer Observer

	// AttemptHeader, when non-empty, is a header the loop sets on every
	// attempt to its number ("1", "2", ...), for servers that log it. It
	// costs a copy of the request and its header map per attempt. The zero
	// value sets nothing.
	AttemptHeader string
}

// admission returns the admission configuration of c (normalised).
func (c *Config) admission() admission.Config {
	spread := c.BaseDelay
	if spread == 0 {
		spread = -1
	}
	maxWait := c.MaxRetryAfter
	if maxWait == 0 {
		maxWait = -1
	}
	retryable := c.Classifier.Retryable
	return admission.Config{
		MaxWait:      maxWait,
		Spread:       spread,
		Retryable:    retryable,
		Key:          c.AdmissionKey,
		DisableQuota: c.DisablePacing,
		DisablePace:  c.DisableAdaptivePace,
	}
}

// normalize returns c with defaults in place of zero values.
func (c Config) normalize() Config {
	switch {
	case c.MaxAttempts == 0:
		c.MaxAttempts = DefaultMaxAttempts
	case c.MaxAttempts < 0:
		c.MaxAttempts = 1
	}
	switch {
	case c.BaseDelay == 0:
		c.BaseDelay = DefaultBaseDelay
	case c.BaseDelay < 0:
		c.BaseDelay = 0
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxDelay < c.BaseDelay {
		c.MaxDelay = c.BaseDelay
	}
	switch {
	case c.MaxRetryAfter == 0:
		c.MaxRetryAfter = DefaultMaxRetryAfter
	case c.MaxRetryAfter < 0:
		c.MaxRetryAfter = 0
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Classifier == nil {
		c.Classifier = &classify.Classifier{}
	}
	if c.Hedge != nil {
		c.Hedge = c.Hedge.normalize()
	}
	if c.LearnedTimeout != nil {
		c.LearnedTimeout = c.LearnedTimeout.normalize()
	}
	return c
}

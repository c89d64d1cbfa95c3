package transport

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/layermark"
	"github.com/rebound-http/rebound/internal/learnedcut"
)

// Transport is the retry loop, an http.RoundTripper. For every call it sends
// an attempt through Next, classifies the outcome and, while the outcome is
// retryable and safe to repeat, waits and tries again:
//
//   - the wait is the server's hint (Retry-After, RateLimit,
//     X-RateLimit-Reset) plus a small upward spread, or else a jittered
//     exponential backoff; a hint over MaxRetryAfter, or any wait that would
//     end after the context's deadline, ends the loop at once;
//   - every attempt takes a turn from its host's admission (package
//     admission) before it is sent and reports what came back: a server's
//     wait hint, quota or throttling sets the pace of that host (and
//     credential) for every call of this Transport, and a call whose turn
//     comes after its deadline returns at once, unsent (see ErrHeld and
//     admission.RefusedError);
//   - bodies are replayed through GetBody, or recorded while the first
//     attempt streams them (see Config.MaxBodyBytes);
//   - a discarded response is read (bounded) and closed, so its keep-alive
//     connection is reused;
//   - an inner link that refuses an attempt with an error matching
//     classify.ErrNotSent (the budget, the breaker) ends the loop, and the
//     caller receives the previous attempt's response or error, or the
//     refusal when it refused the first attempt.
//
// Giving up is transparent: the caller gets the last response, with a
// readable body, and a nil error (Outcome tells how many attempts it took
// and why the loop stopped); or the last error wrapped in an *Error, which
// matches the stop's sentinel (ErrAttemptsExhausted, ErrRefused ...). The
// caller's request is never modified.
//
// Two opt-in settings act on slow attempts rather than failed ones: with
// Config.Hedge an attempt that has not answered after a delay learned from
// its host is joined by a hedge (see HedgeConfig), and with
// Config.LearnedTimeout one that has waited far longer than its host
// usually takes is cut and retried (see LearnedTimeoutConfig).
//
// A call's context may change its attempts and its attempt timeout (see
// WithAttempts, NoRetry and WithAttemptTimeout).
//
// Attempts after the first carry an Attempt in their context; the first
// carries nothing, so a call that succeeds at once costs no allocation.
//
// A Transport is safe for concurrent use. Create one with New; the zero
// value fails every request, unsent, with an *Error matching
// ErrZeroTransport.
type Transport struct {
	next http.RoundTripper
	cfg  Config
	adm  *admission.Admission // turns per host and credential; nil with NoWait
	lat  *latencies           // per-host latency, for Config.Hedge and LearnedTimeout; nil when both are off
}

// New returns a retry loop that sends attempts through next, configured by
// cfg (zero fields take the defaults). A nil next means a pooled transport
// from go-cleanhttp, created here and owned by this Transport.
//
//	client := &http.Client{Transport: transport.New(nil, transport.Config{})}
func New(next http.RoundTripper, cfg Config) *Transport {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	t := &Transport{next: next, cfg: cfg.normalize()}
	if !t.cfg.NoWait {
		t.adm = admission.New(t.cfg.admission())
	}
	if t.cfg.Hedge != nil || t.cfg.LearnedTimeout != nil {
		t.lat = &latencies{hedge: t.cfg.Hedge, timeout: t.cfg.LearnedTimeout}
	}
	return t
}

// Next returns the RoundTripper that attempts are sent through.
func (t *Transport) Next() http.RoundTripper { return t.next }

// CloseIdleConnections closes the idle connections of Next, when it has
// that method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// outcome is one attempt's result that the loop may still hand back.
type outcome struct {
	resp    *http.Response
	err     error
	verdict classify.Verdict
}

// RoundTrip runs the retry loop for req. See Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil {
		return nil, &Error{Attempts: 0, Reason: classify.ReasonInvalidRequest, Stop: StopFinal, Err: ErrNilRequest}
	}
	if t.next == nil {
		return nil, &Error{Attempts: 0, Reason: classify.ReasonInvalidRequest, Stop: StopFinal, Err: ErrZeroTransport}
	}
	cfg := &t.cfg
	ctx := req.Context()
	maxAttempts, attemptTimeout := cfg.MaxAttempts, cfg.AttemptTimeout
	if perCallUsed.Load() {
		maxAttempts, attemptTimeout = callSettings(ctx, maxAttempts, attemptTimeout)
	}

	out := req
	var rec *recorder
	if hasBody(req) && req.GetBody == nil && maxAttempts > 1 && cfg.MaxBodyBytes > 0 {
		rec = newRecorder(req.Body, cfg.MaxBodyBytes, req.ContentLength)
		defer rec.finish()
		out = new(http.Request)
		*out = *req
		out.Body, _ = rec.reader()
		out.GetBody = rec.getBody
	}

	var turn admission.Turn // the current attempt's turn at its host's admission
	var (
		prev  outcome       // the previous attempt's outcome, kept in case the loop must return it
		start time.Time     // when the first attempt returned; read lazily: a clock read costs tens of ns
		delay time.Duration // previous wait, for decorrelated jitter
		cut   bool          // a learned timeout cut an attempt of this call (see learnedcut.Mark)
	)
	for n := 1; ; n++ {
		if n > 1 {
			var ok bool
			out, ok = t.retryRequest(req, rec, n, start, cut)
			if !ok {
				return t.giveUp(req, prev, n-1, StopBodyNotReplay, nil)
			}
		} else if cfg.AttemptHeader != "" {
			out = withAttemptHeader(out, cfg.AttemptHeader, 1)
		}
		var wait time.Duration
		var refusal error
		turn, wait, refusal = t.adm.Take(req)
		if refusal != nil {
			return t.refuseHeld(req, prev, n, refusal)
		}
		if wait > 0 {
			if cfg.Observer != nil {
				cfg.Observer.Observe(Event{Kind: EventHold, Request: req, Attempt: n, Delay: wait, FromServer: turn.Limit() != admission.LimitPace, Limit: turn.Limit()})
			}
			if err := turn.Wait(ctx); err != nil {
				release(prev, cfg.MaxResponseBytes)
				return t.giveUp(req, outcome{err: err, verdict: classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonCanceled}}, n-1, StopCanceled, nil)
			}
		}
		if cfg.Observer != nil {
			cfg.Observer.Observe(Event{Kind: EventAttempt, Request: req, Attempt: n})
		}

		var (
			resp   *http.Response
			err    error
			judged *classify.Verdict // by a hedged race, which asks the Classifier and Decide itself
		)
		resp, err, judged, n = t.attempt(&turn, req, out, rec, n, start, maxAttempts, attemptTimeout)
		if err != nil && !cut && t.lat != nil {
			cut = cutByLearned(err)
		}

		if err != nil && prev.verdict.Outcome == classify.Retryable && errors.Is(err, classify.ErrNotSent) {
			turn.Cancel()
			// An inner gate refused this retry: the caller gets the
			// previous attempt's real outcome.
			if cfg.Observer != nil {
				cfg.Observer.Observe(Event{Kind: EventGiveUp, Request: req, Attempt: n - 1, Reason: classify.ReasonNotSent,
					StatusCode: statusOf(prev.resp), Err: err, Stop: StopRefused})
			}
			markSpent(req, StopRefused, n-1, "")
			return t.finish(prev, n-1, StopRefused, "", err)
		}
		turn.Done(resp, err)
		cur := outcome{resp: resp, err: err}
		if judged != nil {
			cur.verdict = *judged
		} else {
			cur.verdict = cfg.Classifier.Classify(req, resp, err)
			if cfg.Decide != nil {
				cur.verdict = t.decide(out, resp, err, cur.verdict, attemptTimeout)
			}
		}
		if cur.verdict.Outcome != classify.Retryable {
			release(prev, cfg.MaxResponseBytes)
			if err != nil && errors.Is(err, classify.ErrNotSent) {
				// A gate refused the first attempt: nothing was sent.
				return t.giveUp(req, cur, n-1, StopRefused, err)
			}
			if cur.verdict.Outcome == classify.Final && (err != nil || cfg.Observer != nil || !classify.IdempotentMethod(req.Method)) {
				return t.giveUp(req, cur, n, StopFinal, nil)
			}
			if cur.verdict.Outcome == classify.Final && cur.verdict.Reason == classify.ReasonServerAdvised {
				markSpent(req, StopFinal, n, cur.verdict.Reason)
			}
			if n > 1 {
				var stop error // success after retries
				if cur.verdict.Outcome == classify.Final {
					stop = ErrFinal
				}
				remember(resp, n, stop)
			}
			return resp, nil
		}
		// The outcome is retryable: may we, and how long do we wait?
		if n >= maxAttempts {
			release(prev, cfg.MaxResponseBytes)
			return t.giveUp(req, cur, n, StopAttempts, nil)
		}
		if !replayable(req, rec) {
			release(prev, cfg.MaxResponseBytes)
			return t.giveUp(req, cur, n, StopBodyNotReplay, nil)
		}
		now := time.Now()
		if n == 1 {
			start = now
		}
		wait, fromServer := time.Duration(0), false
		if resp != nil && !cfg.DisableWaitHints {
			if hint, ok := classify.WaitHint(resp.Header, now); ok {
				if hint > cfg.MaxRetryAfter {
					release(prev, cfg.MaxResponseBytes)
					return t.giveUp(req, cur, n, StopHintOverCap, nil)
				}
				wait, fromServer = hint+HintSpread(hint, cfg.BaseDelay, rand.Float64()), true
			}
		}
		if !fromServer {
			if cfg.Jitter == DecorrelatedJitter {
				wait = DecorrelatedBackoff(delay, cfg.BaseDelay, cfg.MaxDelay, rand.Float64())
			} else {
				wait = Backoff(n, cfg.BaseDelay, cfg.MaxDelay, rand.Float64())
			}
		}
		if cfg.NoWait {
			wait = 0
		}
		delay = wait
		if deadline, ok := ctx.Deadline(); ok && now.Add(wait).After(deadline) {
			release(prev, cfg.MaxResponseBytes)
			return t.giveUp(req, cur, n, StopDeadline, nil)
		}
		if resp != nil && !t.buffer(resp, attemptTimeout) {
			release(prev, cfg.MaxResponseBytes)
			return t.giveUp(req, cur, n, StopResponseTooBig, nil)
		}
		release(prev, cfg.MaxResponseBytes)
		prev = cur
		if cfg.Observer != nil {
			cfg.Observer.Observe(Event{Kind: EventRetry, Request: req, Attempt: n, Reason: cur.verdict.Reason,
				StatusCode: statusOf(resp), Err: err, Delay: wait, FromServer: fromServer, Why: retryWhy(req, cur)})
		}
		if err := sleep(ctx, wait); err != nil {
			release(prev, cfg.MaxResponseBytes)
			return t.giveUp(req, outcome{err: err, verdict: classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonCanceled}}, n, StopCanceled, nil)
		}
	}
}

// refuseHeld ends the call at attempt n, unsent, because its host is held
// or paced past the call's deadline: the caller gets the previous attempt's
// outcome, or herr.
func (t *Transport) refuseHeld(req *http.Request, prev outcome, n int, herr error) (*http.Response, error) {
	if n > 1 {
		return t.giveUp(req, prev, n-1, StopHeld, herr)
	}
	if t.cfg.Observer != nil {
		t.cfg.Observer.Observe(Event{Kind: EventGiveUp, Request: req, Attempt: 0, Reason: classify.ReasonNotSent, Err: herr, Stop: StopHeld, Limit: admission.LimitOf(herr)})
	}
	markSpent(req, StopHeld, 0, "")
	return nil, &Error{Attempts: 0, Reason: classify.ReasonNotSent, Stop: StopHeld, Err: herr, Refusal: herr}
}

// attempt sends attempt n of req as out: alone, or raced by hedges when
// latency is tracked (see sendAttempt). A panic below gives its turn back
// before it goes on up; otherwise the caller reports the turn.
func (t *Transport) attempt(turn *admission.Turn, req, out *http.Request, rec *recorder, n int, start time.Time, maxAttempts int, timeout time.Duration) (resp *http.Response, err error, judged *classify.Verdict, last int) {
	returned := false
	defer func() {
		if !returned {
			turn.Cancel()
		}
	}()
	if t.lat == nil {
		resp, err = t.send(out, timeout)
		returned = true
		return resp, err, nil, n
	}
	resp, err, judged, last = t.sendAttempt(turn, req, out, rec, n, start, maxAttempts, timeout)
	returned = true
	return resp, err, judged, last
}

// send makes one attempt through next, enforcing the RoundTripper contract
// on its result and the per-attempt timeout (none when timeout ≤ 0).
func (t *Transport) send(req *http.Request, timeout time.Duration) (*http.Response, error) {
	return t.sendCause(req, timeout, classify.ErrAttemptTimeout)
}

// sendCause is send, whose timeout ends the attempt's context with cause:
// classify.ErrAttemptTimeout for a configured timeout, errLearnedTimeout
// for a learned one. Either way the error returned matches
// classify.ErrAttemptTimeout, and cause.
func (t *Transport) sendCause(req *http.Request, timeout time.Duration, cause error) (*http.Response, error) {
	if timeout <= 0 {
		return checked(t.next.RoundTrip(req))
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(timeout, func() { cancel(cause) })
	resp, err := checked(t.next.RoundTrip(req.WithContext(ctx)))
	if !timer.Stop() {
		// The attempt's own timer fired: a timeout, whatever came back.
		if resp != nil {
			discard(resp, t.cfg.MaxResponseBytes)
			resp = nil
		}
		switch {
		case err == nil && cause == classify.ErrAttemptTimeout:
			err = classify.ErrAttemptTimeout
		case err == nil:
			err = &attemptTimeoutError{cause}
		case cause != classify.ErrAttemptTimeout && !errors.Is(err, cause):
			// The base returned the cancellation without its cause (as
			// net/http does): keep the cause reachable, so the loop can
			// tell a learned cut from a limit the caller set.
			err = &attemptTimeoutError{causeError{err: err, cause: cause}}
		case !errors.Is(err, classify.ErrAttemptTimeout):
			err = &attemptTimeoutError{err}
		}
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the upgraded connection, an io.ReadWriteCloser the
		// caller now owns (a WebSocket client asserts that type): hand it
		// over as it came. net/http has already let go of the request's
		// context, so the attempt's can end now.
		cancel(nil)
		return resp, nil
	}
	// Headers arrived in time; the body is the caller's to read, and the
	// attempt's context ends when it is closed.
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// buffer reads the body of a response the loop is about to retry into
// memory (see bufferBody). With an attempt timeout, a fresh one bounds the
// reading too, so a response whose body stalls cannot hold the loop: the
// attempt's context is cancelled, and what was read is kept, ending with
// an error that matches classify.ErrAttemptTimeout. Without one, only the
// caller's context bounds it.
func (t *Transport) buffer(resp *http.Response, timeout time.Duration) bool {
	if cb, ok := resp.Body.(*cancelBody); ok && timeout > 0 {
		timer := time.AfterFunc(timeout, func() { cb.cancel(classify.ErrAttemptTimeout) })
		defer timer.Stop()
	}
	return bufferBody(resp, t.cfg.MaxResponseBytes)
}

// checked enforces "a response or an error, never both, never neither" on
// the next RoundTripper's result: with both, the response is closed and the
// error wins.
func checked(resp *http.Response, err error) (*http.Response, error) {
	switch {
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	case err == nil && resp == nil:
		return nil, ErrNoResponse
	case resp != nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}

// retryRequest returns the request for attempt n: a shallow copy of req with
// the attempt in its context and a fresh body; marked with
// learnedcut.Mark when cut says a learned timeout cut an earlier
// attempt of the call. It reports false when the body cannot be replayed.
func (t *Transport) retryRequest(req *http.Request, rec *recorder, n int, start time.Time, cut bool) (*http.Request, bool) {
	ctx := WithAttempt(req.Context(), Attempt{N: n, Start: start})
	if cut {
		ctx = learnedcut.Mark(ctx)
	}
	out := req.WithContext(ctx)
	switch {
	case rec != nil:
		body, ok := rec.reader()
		if !ok {
			return nil, false
		}
		out.Body, out.GetBody = body, rec.getBody
	case req.GetBody != nil && hasBody(req):
		body, err := req.GetBody()
		if err != nil || body == nil {
			return nil, false
		}
		out.Body = body
	}
	if t.cfg.AttemptHeader != "" {
		setAttemptHeader(out, t.cfg.AttemptHeader, n)
	}
	return out, true
}

// withAttemptHeader returns a shallow copy of req with its own header map
// carrying the attempt number.
func withAttemptHeader(req *http.Request, name string, n int) *http.Request {
	out := new(http.Request)
	*out = *req
	setAttemptHeader(out, name, n)
	return out
}

// setAttemptHeader gives req (already a copy) its own header map with the
// attempt number.
func setAttemptHeader(req *http.Request, name string, n int) {
	req.Header = req.Header.Clone()
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(name, strconv.Itoa(n))
}

// giveUp reports the end of the loop on cur and returns it. attempts is
// the number of attempts sent; refusal, when not nil, is the gate's or the
// hold's error that refused the next one.
func (t *Transport) giveUp(req *http.Request, cur outcome, attempts int, stop string, refusal error) (*http.Response, error) {
	markSpent(req, stop, attempts, cur.verdict.Reason)
	var why string
	if refusal == nil {
		why = t.why(req, cur, attempts, stop)
	}
	if t.cfg.Observer != nil && (cur.err != nil || cur.verdict.Outcome != classify.Success) {
		t.cfg.Observer.Observe(Event{Kind: EventGiveUp, Request: req, Attempt: attempts, Reason: cur.verdict.Reason,
			StatusCode: statusOf(cur.resp), Err: cur.err, Stop: stop, Why: why, Limit: admission.LimitOf(refusal)})
	}
	return t.finish(cur, attempts, stop, why, refusal)
}

// markSpent tells the rebound.Layer serving the request req was made for,
// if any, that this call spent its retries: it gave up after retrying, a
// gate refused it, or the server below advised against a retry. A call
// that ended on its first attempt for any other reason (a final status, a
// body that cannot be replayed, the caller's cancellation) spent nothing.
func markSpent(req *http.Request, stop string, attempts int, reason string) {
	switch {
	case stop == StopAttempts, stop == StopRefused, stop == StopHeld, reason == classify.ReasonServerAdvised,
		attempts > 1 && stop != StopCanceled:
		layermark.From(req.Context()).Set()
	}
}

// finish hands an outcome to the caller: the response, or the error wrapped
// in an *Error.
func (t *Transport) finish(o outcome, attempts int, stop, why string, refusal error) (*http.Response, error) {
	if o.err != nil {
		err := o.err
		if o.verdict.Reason == classify.ReasonRequestBody && !errors.Is(err, classify.ErrRequestBody) {
			// Recognised by its message (net/http's ContentLength
			// mismatch): mark it, so errors.Is finds every body fault.
			err = &classify.RequestBodyError{Err: err}
		}
		if o.verdict.Reason == classify.ReasonDeadline && !errors.Is(err, context.DeadlineExceeded) {
			// The deadline ended the attempt, whatever net/http saw
			// first (see classify.Classify): say so the same way.
			err = &deadlineError{err}
		}
		return nil, &Error{Attempts: attempts, Reason: o.verdict.Reason, Stop: stop, Why: why, Err: err, Refusal: refusal}
	}
	if o.resp != nil && (attempts > 1 || stop != StopFinal || why != "") {
		// Given up, or retried, or not repeated: say why (see Outcome).
		// A first attempt's final status is otherwise handed back as
		// it came, for free.
		remember(o.resp, attempts, stopOf(stop, why, refusal))
	}
	return o.resp, nil
}

// release discards a kept outcome that will not be returned.
func release(o outcome, limit int64) {
	if o.resp != nil {
		discard(o.resp, limit)
	}
}

// replayable reports whether another attempt can carry the whole body.
func replayable(req *http.Request, rec *recorder) bool {
	switch {
	case !hasBody(req):
		return true
	case rec != nil:
		return rec.replayable()
	default:
		return req.GetBody != nil
	}
}

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// sleep waits for d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// cancelBody ends an attempt's context when the caller closes the body.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// deadlineError marks an attempt's error as caused by the context's
// deadline, which it reads as, while keeping the original error (such as
// net/http's "request canceled" when http.Client.Timeout closed
// req.Cancel a moment before the deadline ended the context) reachable.
type deadlineError struct{ err error }

func (e *deadlineError) Error() string { return context.DeadlineExceeded.Error() }
func (e *deadlineError) Unwrap() []error {
	return []error{context.DeadlineExceeded, e.err}
}

// causeError is an attempt's error err, read as it is, that also matches
// cause, the cause its context was ended with.
type causeError struct{ err, cause error }

func (e causeError) Error() string   { return e.err.Error() }
func (e causeError) Unwrap() []error { return []error{e.cause, e.err} }

// attemptTimeoutError marks an attempt's error as caused by the per-attempt
// timeout while keeping the original cause reachable.
type attemptTimeoutError struct{ err error }

func (e *attemptTimeoutError) Error() string { return "attempt timed out: " + e.err.Error() }
func (e *attemptTimeoutError) Unwrap() []error {
	return []error{classify.ErrAttemptTimeout, e.err}
}

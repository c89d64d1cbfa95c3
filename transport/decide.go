package transport

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// DecideFunc decides what one attempt's outcome means, extending the
// default rules: it receives the attempt's request, its response or error,
// and def, the verdict of Config.Classifier (the default statuses and
// error rules), and returns the verdict the loop acts on. Returning def
// keeps the default; a hook that cares about a few cases returns def for
// all others, so the default statuses stay without being listed again:
//
//	Decide: func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
//		switch {
//		case strings.HasPrefix(req.URL.Path, "/v1/reports/"):
//			if def.Outcome == classify.Retryable {
//				return classify.Verdict{Outcome: classify.Final, Reason: "reports not retried"}
//			}
//		case resp != nil && resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Retryable") == "true":
//			return classify.Verdict{Outcome: classify.Retryable, Reason: "x-retryable"}
//		}
//		return def
//	}
//
// The verdict's Reason is reported in events, errors (Error.Reason) and
// metrics: use a short constant, never a value taken from the request or
// the response, so the set of labels stays small. An empty Reason keeps
// def's when the Outcome is def's, and reads classify.ReasonCustom when it
// is not. An Outcome other than the three classify constants counts as
// Final; Success for an attempt that ended on an error counts as Final too
// (there is no response to hand back).
//
// The hook is the user's own rule, and the loop acts on a Retryable
// verdict whatever the request's method: unlike the default rules, which
// repeat a POST only when it provably was not sent, was answered 429 or
// carries a key, a hook that returns Retryable for a POST makes the loop
// send it again. That is what "the server said X-Retryable: true" means; a
// hook that retries a status on its own judgement should check
// classify.Idempotent(req) (or know that the server deduplicates) before
// licensing a repeat of a non-idempotent request. Every other bound still
// applies to a retry the hook asks for: the attempts, the wait and its
// deadline, the server's wait hint (a 200 carrying Retry-After is polled at
// the pace it asks), the body's replayability, the budget and the breaker.
// The hook does not change what the breaker counts (classify.ServerHealth).
//
// The hook is not asked about a refusal by a gate (an error matching
// classify.ErrNotSent: the loop stops there whatever the verdict) nor
// about an attempt that ended after the caller's context did (nothing can
// be retried). req is the attempt's request: AttemptFrom(req.Context())
// gives its number. The hook must not modify req nor read its body; it may
// read resp's body only through PeekBody, which leaves it whole for the
// caller. When Config.AttemptTimeout is set, it bounds the hook's reading
// of the body afresh, as it bounds the buffering of a retried response.
//
// The hook runs on the goroutine of the call, once per attempt, and must
// be safe for concurrent use. With Decide nil the loop never calls it and
// pays nothing.
type DecideFunc func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict

// decide asks the hook about attempt req's outcome, whose default verdict
// is def, and returns the verdict the loop acts on (see DecideFunc).
func (t *Transport) decide(req *http.Request, resp *http.Response, err error, def classify.Verdict, attemptTimeout time.Duration) classify.Verdict {
	if err != nil && errors.Is(err, classify.ErrNotSent) || req.Context().Err() != nil {
		return def
	}
	if resp != nil && attemptTimeout > 0 {
		if cb, ok := resp.Body.(*cancelBody); ok {
			timer := time.AfterFunc(attemptTimeout, func() { cb.cancel(classify.ErrAttemptTimeout) })
			defer timer.Stop()
		}
	}
	v := t.cfg.Decide(req, resp, err, def)
	switch v.Outcome {
	case classify.Success, classify.Retryable, classify.Final:
	default:
		v.Outcome = classify.Final
	}
	if err != nil && v.Outcome == classify.Success {
		v.Outcome = classify.Final
	}
	if v.Reason == "" {
		v.Reason = def.Reason
		if v.Outcome != def.Outcome {
			v.Reason = classify.ReasonCustom
		}
	}
	return v
}

// ErrPeekUpgrade is returned by PeekBody for a 101 Switching Protocols
// response, whose body is the upgraded connection, not a message body.
var ErrPeekUpgrade = errors.New("transport: PeekBody of a 101 Switching Protocols response")

// PeekBody reads up to n bytes of resp's body and puts them back: after it,
// resp.Body yields the bytes returned, then the rest of the stream, and
// closing it closes the original body. A DecideFunc uses it to look at a
// body (a JSON status field, an error code) while leaving the caller a
// complete one:
//
//	b, err := transport.PeekBody(resp, 4<<10)
//	if err == nil && bytes.Contains(b, []byte(`"status":"pending"`)) {
//		return classify.Verdict{Outcome: classify.Retryable, Reason: "pending"}
//	}
//
// It returns fewer than n bytes when the body is shorter, and the read's
// error other than io.EOF, which the restored body then returns after the
// bytes read, as the original would have; nothing is lost either way. The
// returned slice is the one the body replays: do not modify it. n bounds
// the memory used; n ≤ 0 reads nothing. A nil response, a nil body and
// http.NoBody give no bytes; a 101 response gives ErrPeekUpgrade and is
// left alone. PeekBody may be called more than once on one response (each
// call sees the body from its start) but not concurrently with reading
// resp.Body.
func PeekBody(resp *http.Response, n int64) ([]byte, error) {
	if resp == nil || n <= 0 || resp.Body == nil || resp.Body == http.NoBody {
		return nil, nil
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, ErrPeekUpgrade
	}
	// Keep the loop's own wrapper outermost, so the attempt's context
	// still ends when the caller closes the body.
	slot := &resp.Body
	if cb, ok := resp.Body.(*cancelBody); ok {
		slot = &cb.ReadCloser
	}
	src := *slot
	data, err := io.ReadAll(io.LimitReader(src, n))
	if err == io.EOF {
		err = nil
	}
	*slot = &peekedBody{data: data, err: err, src: src}
	return data[:len(data):len(data)], err
}

// peekedBody replays peeked bytes, then the read error that stopped the
// peek, or else the rest of src.
type peekedBody struct {
	data []byte
	off  int
	err  error // from the peek; nil when it stopped at n bytes or at EOF
	src  io.ReadCloser
}

func (p *peekedBody) Read(b []byte) (int, error) {
	if p.off < len(p.data) {
		n := copy(b, p.data[p.off:])
		p.off += n
		return n, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	return p.src.Read(b)
}

func (p *peekedBody) Close() error { return p.src.Close() }

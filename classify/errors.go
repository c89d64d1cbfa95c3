package classify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// ErrNotSent is matched, with errors.Is, by every error that means "this
// attempt was refused before anything was sent". The gates of a rebound
// chain (the retry budget, the circuit breaker) return errors that match it
// while carrying their own type; the retry loop then stops and hands the
// caller the previous attempt's real outcome, or the refusal when there was
// no previous attempt.
var ErrNotSent = errors.New("classify: request not sent")

// ErrAttemptTimeout is the cause (context.Cause) of an attempt's context
// when the retry loop's per-attempt timeout, not the caller, ended it. An
// error that matches it is a retryable timeout and counts against the
// server's health, although the attempt's context reads as cancelled.
var ErrAttemptTimeout = errors.New("classify: attempt timed out")

// ErrRequestBody is matched, with errors.Is, by an attempt's error when
// reading the caller's request body failed (a file that cannot be read, a
// pipe whose writer gave up). The fault is the caller's, not the server's:
// the outcome is final (another attempt would read the same broken source)
// and says nothing about the server's health. The retry loop marks such
// errors with a *RequestBodyError for the bodies it records; net/http
// returns the body's error as it is, so a body read outside the loop is
// not recognised.
var ErrRequestBody = errors.New("classify: reading the request body failed")

// RequestBodyError wraps the error of reading a request body, so that it
// matches ErrRequestBody while errors.Is and errors.As still reach the
// cause. The zero value (no cause) reads like ErrRequestBody.
type RequestBodyError struct {
	// Err is the error the body's Read returned.
	Err error
}

// Error returns "request body: " and the cause.
func (e *RequestBodyError) Error() string {
	if e.Err == nil {
		return ErrRequestBody.Error()
	}
	return "request body: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *RequestBodyError) Unwrap() error { return e.Err }

// Is reports whether target is ErrRequestBody.
func (e *RequestBodyError) Is(target error) bool { return target == ErrRequestBody }

// cancelClosed reports whether req's deprecated Cancel channel is closed,
// as http.Client.Timeout closes it around RoundTrippers it does not know.
func cancelClosed(req *http.Request) bool {
	if req.Cancel == nil {
		return false
	}
	select {
	case <-req.Cancel:
		return true
	default:
		return false
	}
}

// attemptTimedOut reports whether req's context was ended by the retry
// loop's per-attempt timeout.
func attemptTimedOut(req *http.Request) bool {
	return req != nil && context.Cause(req.Context()) == ErrAttemptTimeout
}

// NotSentError is an error, with its own message, that matches ErrNotSent.
// The zero value is usable and reads like ErrNotSent. Gates that need no
// fields of their own can declare their sentinel as one:
//
//	var ErrExhausted error = &classify.NotSentError{Msg: "budget: retry budget exhausted"}
type NotSentError struct {
	// Msg is the error text. The zero value reads "classify: request not sent".
	Msg string
}

// Error returns Msg.
func (e *NotSentError) Error() string {
	if e.Msg == "" {
		return ErrNotSent.Error()
	}
	return e.Msg
}

// Is reports whether target is ErrNotSent.
func (e *NotSentError) Is(target error) bool { return target == ErrNotSent }

// NotSent reports whether err proves the request never reached the server:
// a gate's refusal (ErrNotSent), or a failure while dialling (connection
// refused, DNS, a dial timeout), or an HTTP/2 stream the server did not
// process (REFUSED_STREAM, or above a GOAWAY's last stream id). Errors
// after the connection was made, including a reset or EOF while writing,
// may have reached the server.
func NotSent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotSent) {
		return true
	}
	return has[*net.DNSError](err) || isDial(err) || errors.Is(err, syscall.ECONNREFUSED) || http2NotProcessed(err)
}

// ErrorReason names the cause of a transport error with one of the Reason
// constants. It looks at types and sentinels (errors.Is / errors.As) and,
// only for HTTP/2 errors, redirect limits and a body that disagrees with
// its ContentLength, whose types net/http does not export, at the message.
func ErrorReason(err error) string {
	switch {
	case err == nil:
		return ReasonOK
	case errors.Is(err, ErrNotSent):
		return ReasonNotSent
	case errors.Is(err, ErrRequestBody):
		return ReasonRequestBody
	case errors.Is(err, ErrAttemptTimeout):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case isTLS(err):
		return ReasonTLS
	case has[*net.DNSError](err):
		return ReasonDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return ReasonReset
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case isDial(err):
		return ReasonDial
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ReasonEOF
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "http2:"), strings.Contains(msg, "stream error:"):
		return ReasonHTTP2
	case strings.Contains(msg, "stopped after") && strings.Contains(msg, "redirects"):
		return ReasonRedirects
	case strings.Contains(msg, "ContentLength=") &&
		(strings.Contains(msg, "with Body length") || strings.Contains(msg, "with nil Body")):
		// net/http's "http: ContentLength=10 with Body length 3": the
		// body disagrees with the length the caller declared.
		return ReasonRequestBody
	case strings.Contains(msg, "unsupported protocol scheme"),
		strings.Contains(msg, "invalid header field"),
		strings.Contains(msg, "no Host in request URL"),
		strings.Contains(msg, "nil Request"):
		return ReasonInvalidRequest
	}
	return ReasonTransport
}

// has reports whether err's tree holds an error of type E.
func has[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// isTLS reports a TLS handshake or certificate failure, including the
// *tls.CertificateVerificationError that wraps x509 errors in current Go.
func isTLS(err error) bool {
	return has[*tls.CertificateVerificationError](err) ||
		has[x509.UnknownAuthorityError](err) ||
		has[x509.HostnameError](err) ||
		has[x509.CertificateInvalidError](err) ||
		has[tls.RecordHeaderError](err) ||
		has[tls.AlertError](err) ||
		errors.Is(err, http.ErrSchemeMismatch)
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

func isDial(err error) bool {
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "dial"
}

// classifyError is Classify for a non-nil err.
func classifyError(req *http.Request, err error) Verdict {
	if req != nil && !attemptTimedOut(req) {
		// The caller's context, or http.Client.Timeout, ended the attempt.
		// Around a RoundTripper it does not know, http.Client.Timeout both
		// sets the context's deadline and closes req.Cancel from its own
		// timer; the attempt may fail on the second before the first has
		// ended the context. Either way the verdict is the same.
		ctx := req.Context()
		if deadlinePassed(ctx) {
			return Verdict{Outcome: Final, Reason: ReasonDeadline}
		}
		if ctx.Err() != nil || cancelClosed(req) {
			return Verdict{Outcome: Final, Reason: ReasonCanceled}
		}
	}
	reason := ErrorReason(err)
	if reason == ReasonCanceled && attemptTimedOut(req) {
		// A RoundTripper that reports ctx.Err() rather than its cause.
		reason = ReasonTimeout
	}
	switch reason {
	case ReasonNotSent:
		return Verdict{Outcome: Final, Reason: reason, NotSent: true}
	case ReasonTLS, ReasonInvalidRequest, ReasonRedirects, ReasonCanceled, ReasonRequestBody:
		return Verdict{Outcome: Final, Reason: reason}
	}
	if req != nil && RequestProblem(req) != "" {
		return Verdict{Outcome: Final, Reason: ReasonInvalidRequest}
	}
	if reason == ReasonDNS {
		if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
			return Verdict{Outcome: Final, Reason: reason, NotSent: true}
		}
	}
	notSent := NotSent(err)
	if notSent || Idempotent(req) {
		return Verdict{Outcome: Retryable, Reason: reason, NotSent: notSent}
	}
	return Verdict{Outcome: Final, Reason: reason}
}

// RequestProblem returns a short description of what makes req impossible
// to send (a nil URL, a scheme other than http or https, no host, an
// invalid header name or value), or "" when it is well formed. An attempt
// that failed because of such a problem would fail again.
func RequestProblem(req *http.Request) string {
	switch {
	case req == nil:
		return "nil request"
	case req.URL == nil:
		return "nil URL"
	case req.URL.Scheme != "http" && req.URL.Scheme != "https":
		return "unsupported scheme"
	case req.URL.Host == "":
		return "no host"
	}
	for name, values := range req.Header {
		if !validHeaderName(name) {
			return "invalid header name"
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return "invalid header value"
			}
		}
	}
	return ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s has no control bytes other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

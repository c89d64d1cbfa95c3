package classify_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/learnedcut"
)

// timeoutError is a net.Error that reports a timeout, like the errors of a
// connection whose deadline passed.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// gateError is a gate's refusal with its own type, as the breaker and the
// budget declare them.
type gateError struct{ host string }

func (e *gateError) Error() string        { return "breaker: circuit open for " + e.host }
func (e *gateError) Is(target error) bool { return target == classify.ErrNotSent }

// dialRefused is the error net/http returns when nothing listens on the port.
func dialRefused() error {
	return &net.OpError{Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// tlsUnknownAuthority is the error crypto/tls returns, since Go 1.20, for a
// certificate signed by an unknown authority: the x509 error wrapped in a
// *tls.CertificateVerificationError.
func tlsUnknownAuthority() error {
	return &tls.CertificateVerificationError{
		UnverifiedCertificates: []*x509.Certificate{{}},
		Err:                    x509.UnknownAuthorityError{Cert: &x509.Certificate{}},
	}
}

func urlErr(op string, err error) error {
	return &url.Error{Op: op, URL: "http://api.example.test/v1/items", Err: err}
}

// errorCase is one transport error and what it means for a GET and for a
// POST without an idempotency key, both with a live context.
type errorCase struct {
	name    string
	err     error
	get     classify.Outcome
	post    classify.Outcome
	reason  string
	notSent bool
	health  classify.Health
}

const (
	success   = classify.Success
	retryable = classify.Retryable
	final     = classify.Final
	healthy   = classify.Healthy
	unhealthy = classify.Unhealthy
	neutral   = classify.Neutral
)

func transportErrorCases() []errorCase {
	dnsNotFound := &net.DNSError{Err: "no such host", Name: "nx.example.test", IsNotFound: true}
	dnsTimeout := &net.DNSError{Err: "i/o timeout", Name: "api.example.test", Server: "10.0.0.53:53", IsTimeout: true}
	goaway := errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`)
	return []errorCase{
		// Dial phase: provably not sent, so retried whatever the method.
		{"dial refused", dialRefused(), retryable, retryable, classify.ReasonRefused, true, unhealthy},
		{"dial refused in url.Error", urlErr("Post", dialRefused()), retryable, retryable, classify.ReasonRefused, true, unhealthy},
		{"dial refused wrapped with %w", fmt.Errorf("attempt 1: %w", dialRefused()), retryable, retryable, classify.ReasonRefused, true, unhealthy},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, retryable, retryable, classify.ReasonRefused, true, unhealthy},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, retryable, retryable, classify.ReasonTimeout, true, unhealthy},
		{"dial host unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)},
			retryable, retryable, classify.ReasonDial, true, unhealthy},
		{"dns timeout", dnsTimeout, retryable, retryable, classify.ReasonDNS, true, unhealthy},
		{"dns timeout in dial OpError", urlErr("Get", &net.OpError{Op: "dial", Net: "tcp", Err: dnsTimeout}),
			retryable, retryable, classify.ReasonDNS, true, unhealthy},
		{"dns temporary", &net.DNSError{Err: "server misbehaving", Name: "api.example.test", IsTemporary: true},
			retryable, retryable, classify.ReasonDNS, true, unhealthy},
		// A host that does not exist will not exist on the next attempt.
		{"dns not found", dnsNotFound, final, final, classify.ReasonDNS, true, unhealthy},
		{"dns not found in url.Error", urlErr("Get", &net.OpError{Op: "dial", Net: "tcp", Err: dnsNotFound}),
			final, final, classify.ReasonDNS, true, unhealthy},

		// After the connection was made: may have reached the server.
		{"reset while reading", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
			retryable, final, classify.ReasonReset, false, unhealthy},
		{"reset in url.Error", urlErr("Post", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}),
			retryable, final, classify.ReasonReset, false, unhealthy},
		{"broken pipe while writing", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)},
			retryable, final, classify.ReasonReset, false, unhealthy},
		{"connection aborted", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNABORTED},
			retryable, final, classify.ReasonReset, false, unhealthy},
		{"unexpected EOF", io.ErrUnexpectedEOF, retryable, final, classify.ReasonEOF, false, unhealthy},
		{"EOF in url.Error", urlErr("Post", io.EOF), retryable, final, classify.ReasonEOF, false, unhealthy},
		{"unexpected EOF wrapped with %w", fmt.Errorf("reading response: %w", io.ErrUnexpectedEOF),
			retryable, final, classify.ReasonEOF, false, unhealthy},
		{"net.Error timeout", timeoutError{}, retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"read deadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded},
			retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"timeout in url.Error", urlErr("Get", timeoutError{}), retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"an inner link's deadline", context.DeadlineExceeded, retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"attempt timeout", classify.ErrAttemptTimeout, retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"attempt timeout in url.Error", urlErr("Get", classify.ErrAttemptTimeout), retryable, final, classify.ReasonTimeout, false, unhealthy},
		{"http2 GOAWAY", goaway, retryable, final, classify.ReasonHTTP2, false, unhealthy},
		{"http2 GOAWAY in url.Error", urlErr("Get", goaway), retryable, final, classify.ReasonHTTP2, false, unhealthy},
		{"http2 stream error", errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"),
			retryable, final, classify.ReasonHTTP2, false, unhealthy},
		{"unknown error", errors.New("boom"), retryable, final, classify.ReasonTransport, false, unhealthy},
		{"unknown error in url.Error", urlErr("Get", errors.New("boom")), retryable, final, classify.ReasonTransport, false, unhealthy},
		{"url.Error without a cause", &url.Error{Op: "Get", URL: "http://api.example.test/"},
			retryable, final, classify.ReasonTransport, false, unhealthy},

		// TLS: another attempt meets the same certificate.
		{"certificate verification wraps unknown authority", urlErr("Get", tlsUnknownAuthority()),
			final, final, classify.ReasonTLS, false, unhealthy},
		{"certificate verification in OpError", &net.OpError{Op: "remote error", Err: tlsUnknownAuthority()},
			final, final, classify.ReasonTLS, false, unhealthy},
		{"bare unknown authority", x509.UnknownAuthorityError{}, final, final, classify.ReasonTLS, false, unhealthy},
		{"hostname mismatch", urlErr("Get", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "api.example.test"}),
			final, final, classify.ReasonTLS, false, unhealthy},
		{"expired certificate", x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired},
			final, final, classify.ReasonTLS, false, unhealthy},
		{"record header", urlErr("Get", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}),
			final, final, classify.ReasonTLS, false, unhealthy},
		{"alert", tls.AlertError(40), final, final, classify.ReasonTLS, false, unhealthy},
		{"scheme mismatch", urlErr("Get", http.ErrSchemeMismatch), final, final, classify.ReasonTLS, false, unhealthy},

		// The request itself, or the client's policy: say nothing of the server.
		{"too many redirects", urlErr("Get", errors.New("stopped after 10 redirects")),
			final, final, classify.ReasonRedirects, false, neutral},
		{"unsupported protocol scheme", &url.Error{Op: "Get", URL: "ftp://api.example.test/", Err: errors.New(`unsupported protocol scheme "ftp"`)},
			final, final, classify.ReasonInvalidRequest, false, neutral},
		{"invalid header field", errors.New(`net/http: invalid header field name "Bad Name"`),
			final, final, classify.ReasonInvalidRequest, false, neutral},
		{"no host", errors.New("http: no Host in request URL"), final, final, classify.ReasonInvalidRequest, false, neutral},

		// The caller's body: another attempt reads the same broken source.
		{"request body error", &classify.RequestBodyError{Err: errors.New("disk on fire")},
			final, final, classify.ReasonRequestBody, false, neutral},
		{"request body error under readfrom", urlErr("Put", &net.OpError{Op: "readfrom", Net: "tcp",
			Err: &classify.RequestBodyError{Err: os.NewSyscallError("read", syscall.ECONNRESET)}}),
			final, final, classify.ReasonRequestBody, false, neutral},
		{"zero RequestBodyError", &classify.RequestBodyError{}, final, final, classify.ReasonRequestBody, false, neutral},
		{"body shorter than ContentLength", urlErr("Put", errors.New("net/http: HTTP/1.x transport connection broken: http: ContentLength=10 with Body length 3")),
			final, final, classify.ReasonRequestBody, false, neutral},
		{"body longer than ContentLength", errors.New("http: ContentLength=10 with Body length 12"),
			final, final, classify.ReasonRequestBody, false, neutral},
		{"ContentLength without a body", errors.New("http: Request.ContentLength=5 with nil Body"),
			final, final, classify.ReasonRequestBody, false, neutral},

		// Gates: refused before anything was sent; the loop stops.
		{"ErrNotSent", classify.ErrNotSent, final, final, classify.ReasonNotSent, true, neutral},
		{"NotSentError", &classify.NotSentError{Msg: "x"}, final, final, classify.ReasonNotSent, true, neutral},
		{"zero NotSentError", &classify.NotSentError{}, final, final, classify.ReasonNotSent, true, neutral},
		{"ErrNotSent wrapped with %w", fmt.Errorf("budget: retry budget exhausted: %w", classify.ErrNotSent),
			final, final, classify.ReasonNotSent, true, neutral},
		{"gate's own type", &gateError{host: "api.example.test"}, final, final, classify.ReasonNotSent, true, neutral},
		{"gate's own type in url.Error", urlErr("Get", &gateError{host: "api.example.test"}),
			final, final, classify.ReasonNotSent, true, neutral},

		// An inner link cancelled on its own, the caller's context is alive.
		{"inner cancellation", context.Canceled, final, final, classify.ReasonCanceled, false, neutral},
	}
}

func TestClassifyTransportErrors(t *testing.T) {
	for _, tt := range transportErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			get := classify.Classify(newRequest(t, http.MethodGet), nil, tt.err)
			assert.Equal(t, classify.Verdict{Outcome: tt.get, Reason: tt.reason, NotSent: tt.notSent}, get, "GET")

			post := classify.Classify(newRequest(t, http.MethodPost), nil, tt.err)
			assert.Equal(t, classify.Verdict{Outcome: tt.post, Reason: tt.reason, NotSent: tt.notSent}, post, "POST")

			// An idempotency key makes the POST as safe as the GET.
			keyed := classify.Classify(newRequest(t, http.MethodPost, "Idempotency-Key", "k-1"), nil, tt.err)
			assert.Equal(t, get, keyed, "POST with Idempotency-Key")

			assert.Equal(t, tt.reason, classify.ErrorReason(tt.err), "ErrorReason")
			assert.Equal(t, tt.notSent, classify.NotSent(tt.err), "NotSent")
			assert.Equal(t, tt.health, classify.ServerHealth(newRequest(t, http.MethodGet), nil, tt.err), "ServerHealth")
		})
	}
}

// TestClassifyResponseIgnoredWithError checks that an error wins over a
// response passed with it (a RoundTripper must not return both).
func TestClassifyResponseIgnoredWithError(t *testing.T) {
	got := classify.Classify(newRequest(t, http.MethodGet), response(200), io.ErrUnexpectedEOF)
	assert.Equal(t, classify.Verdict{Outcome: retryable, Reason: classify.ReasonEOF}, got)
}

func TestClassifyContext(t *testing.T) {
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	cancelledWithCause := func(cause error) func() context.Context {
		return func() context.Context {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(cause)
			return ctx
		}
	}
	pastDeadline := func() context.Context {
		// Already past: the context is done at once and Err reports the
		// deadline, not a cancellation, even after cancel.
		ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		cancel()
		return ctx
	}
	cancelledAtDeadline := func() context.Context {
		return pastDeadlineButCancelled{cancelled()}
	}
	deadlinePassedNotDone := func() context.Context {
		return pastDeadlineNotDone{context.Background()}
	}
	attemptTimedOut := cancelledWithCause(classify.ErrAttemptTimeout)
	marked := func(f func() context.Context) func() context.Context {
		return func() context.Context { return learnedcut.Mark(f()) }
	}
	callerCanceled := classify.Verdict{Outcome: final, Reason: classify.ReasonCanceled}
	callerDeadline := classify.Verdict{Outcome: final, Reason: classify.ReasonDeadline}

	tests := []struct {
		name   string
		ctx    func() context.Context
		err    error
		get    classify.Verdict
		post   classify.Verdict
		health classify.Health
	}{
		{"caller cancelled", cancelled, context.Canceled, callerCanceled, callerCanceled, neutral},
		{"caller cancelled, url.Error", cancelled, urlErr("Get", context.Canceled), callerCanceled, callerCanceled, neutral},
		{"caller cancelled, reset reported", cancelled, &net.OpError{Op: "read", Err: syscall.ECONNRESET},
			callerCanceled, callerCanceled, neutral},
		{"caller cancelled, dial refused reported", cancelled, dialRefused(), callerCanceled, callerCanceled, neutral},
		{"caller cancelled with its own cause", cancelledWithCause(errors.New("shutting down")),
			errors.New("shutting down"), callerCanceled, callerCanceled, neutral},
		// The caller's deadline ended the wait: final (no time is left),
		// and a server that did not answer in time is unhealthy.
		{"caller deadline passed", pastDeadline, context.DeadlineExceeded, callerDeadline, callerDeadline, unhealthy},
		{"caller deadline passed, url.Error", pastDeadline, urlErr("Get", context.DeadlineExceeded),
			callerDeadline, callerDeadline, unhealthy},
		{"caller deadline passed, timeout reported", pastDeadline, timeoutError{}, callerDeadline, callerDeadline, unhealthy},
		// http.Client.Timeout cancels the context from its own timer, which
		// can fire just before the deadline's: still the deadline.
		{"cancelled at its passed deadline", cancelledAtDeadline, urlErr("Get", context.Canceled),
			callerDeadline, callerDeadline, unhealthy},
		// ... or closes the request's Cancel channel, and the attempt fails
		// before the deadline's timer has ended the context.
		{"deadline passed, context not yet done", deadlinePassedNotDone, errRequestCanceled,
			callerDeadline, callerDeadline, unhealthy},
		// ... unless the attempt failed for a reason of the caller's own.
		{"caller deadline passed, request body", pastDeadline, &classify.RequestBodyError{Err: context.DeadlineExceeded},
			classify.Verdict{Outcome: final, Reason: classify.ReasonDeadline},
			classify.Verdict{Outcome: final, Reason: classify.ReasonDeadline}, neutral},

		// An earlier attempt of the call was cut by a learned timeout: the
		// deadline ending this one is the client's doing, not the
		// server's; the verdict for the loop is the same.
		{"caller deadline passed after a learned cut", marked(pastDeadline), context.DeadlineExceeded, callerDeadline, callerDeadline, neutral},
		{"cancelled at its passed deadline after a learned cut", marked(cancelledAtDeadline), urlErr("Get", context.Canceled),
			callerDeadline, callerDeadline, neutral},
		{"deadline passed, not yet done, after a learned cut", marked(deadlinePassedNotDone), errRequestCanceled,
			callerDeadline, callerDeadline, neutral},
		// ... but a timeout the caller set, or a network error, still
		// counts.
		{"attempt timeout after a learned cut", marked(attemptTimedOut), classify.ErrAttemptTimeout,
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonTimeout},
			classify.Verdict{Outcome: final, Reason: classify.ReasonTimeout}, unhealthy},
		{"live context, refused, after a learned cut", marked(context.Background), dialRefused(),
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true},
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true}, unhealthy},

		// The retry loop's per-attempt timeout ended the attempt: a retryable
		// timeout that counts against the server.
		{"attempt timeout cause, cause returned", attemptTimedOut, classify.ErrAttemptTimeout,
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonTimeout},
			classify.Verdict{Outcome: final, Reason: classify.ReasonTimeout}, unhealthy},
		{"attempt timeout cause, cause in url.Error", attemptTimedOut, urlErr("Get", classify.ErrAttemptTimeout),
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonTimeout},
			classify.Verdict{Outcome: final, Reason: classify.ReasonTimeout}, unhealthy},
		// A RoundTripper that reports ctx.Err() rather than the cause.
		{"attempt timeout cause, context.Canceled returned", attemptTimedOut, context.Canceled,
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonTimeout},
			classify.Verdict{Outcome: final, Reason: classify.ReasonTimeout}, unhealthy},
		{"attempt timeout cause, dial refused", attemptTimedOut, dialRefused(),
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true},
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true}, unhealthy},

		// A context that is alive does not make an error final.
		{"live context, refused", context.Background, dialRefused(),
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true},
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true}, unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			get := newRequestCtx(t, tt.ctx(), http.MethodGet)
			post := newRequestCtx(t, tt.ctx(), http.MethodPost)
			assert.Equal(t, tt.get, classify.Classify(get, nil, tt.err), "GET")
			assert.Equal(t, tt.post, classify.Classify(post, nil, tt.err), "POST")
			assert.Equal(t, tt.health, classify.ServerHealth(get, nil, tt.err), "ServerHealth")
		})
	}

	t.Run("a closed Cancel channel is the caller's cancellation", func(t *testing.T) {
		for name, ctx := range map[string]context.Context{"no deadline": context.Background(), "deadline passed": deadlinePassedNotDone()} {
			req := newRequestCtx(t, ctx, http.MethodGet)
			cancel := make(chan struct{})
			close(cancel)
			req.Cancel = cancel // as http.Client.Timeout does around RoundTrippers it does not know
			want := callerCanceled
			if name == "deadline passed" {
				want = callerDeadline
			}
			assert.Equal(t, want, classify.Classify(req, nil, errRequestCanceled), name)
		}
	})

	t.Run("a response after the caller cancelled is still classified by status", func(t *testing.T) {
		req := newRequestCtx(t, cancelled(), http.MethodGet)
		assert.Equal(t, classify.Verdict{Outcome: success, Reason: classify.ReasonOK},
			classify.Classify(req, response(200), nil))
		assert.Equal(t, healthy, classify.ServerHealth(req, response(200), nil))
	})
}

func TestNotSent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ErrNotSent", classify.ErrNotSent, true},
		{"NotSentError", &classify.NotSentError{Msg: "x"}, true},
		{"ErrNotSent wrapped", fmt.Errorf("gate: %w", classify.ErrNotSent), true},
		{"gate's own type", &gateError{}, true},
		{"dial refused", dialRefused(), true},
		{"dial refused in url.Error", urlErr("Post", dialRefused()), true},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, true},
		{"dial timeout", &net.OpError{Op: "dial", Err: timeoutError{}}, true},
		{"dns not found", &net.DNSError{IsNotFound: true}, true},
		{"dns timeout", &net.DNSError{IsTimeout: true}, true},
		{"reset while reading", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, false},
		{"broken pipe while writing", &net.OpError{Op: "write", Err: syscall.EPIPE}, false},
		{"unexpected EOF", io.ErrUnexpectedEOF, false},
		{"read timeout", &net.OpError{Op: "read", Err: timeoutError{}}, false},
		{"attempt timeout", classify.ErrAttemptTimeout, false},
		{"tls", tlsUnknownAuthority(), false},
		{"GOAWAY", errors.New("http2: server sent GOAWAY and closed the connection"), false},
		{"context canceled", context.Canceled, false},
		{"unknown", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.NotSent(tt.err))
		})
	}
}

func TestNotSentError(t *testing.T) {
	custom := &classify.NotSentError{Msg: "budget: retry budget exhausted"}
	assert.Equal(t, "budget: retry budget exhausted", custom.Error())
	assert.ErrorIs(t, custom, classify.ErrNotSent)
	assert.ErrorIs(t, fmt.Errorf("attempt 2: %w", custom), classify.ErrNotSent)
	assert.NotErrorIs(t, custom, classify.ErrAttemptTimeout)
	assert.NotErrorIs(t, custom, context.Canceled)

	var zero classify.NotSentError
	assert.Equal(t, "classify: request not sent", zero.Error())
	assert.Equal(t, classify.ErrNotSent.Error(), zero.Error())

	// Each gate keeps its own identity: two NotSentErrors are different errors.
	other := &classify.NotSentError{Msg: "breaker: circuit open"}
	assert.NotErrorIs(t, custom, other)
	var target *classify.NotSentError
	require.ErrorAs(t, fmt.Errorf("wrapped: %w", custom), &target)
	assert.Same(t, custom, target)
}

func TestRequestBodyError(t *testing.T) {
	cause := errors.New("disk on fire")
	err := &classify.RequestBodyError{Err: cause}
	assert.Equal(t, "request body: disk on fire", err.Error())
	assert.ErrorIs(t, err, classify.ErrRequestBody)
	assert.ErrorIs(t, err, cause, "the cause stays reachable")
	assert.ErrorIs(t, fmt.Errorf("readfrom: %w", err), classify.ErrRequestBody)
	assert.NotErrorIs(t, err, classify.ErrNotSent)
	assert.NotErrorIs(t, cause, classify.ErrRequestBody, "a bare error is not marked")
	assert.Equal(t, classify.ErrRequestBody.Error(), (&classify.RequestBodyError{}).Error())
}

func TestErrorReasonNil(t *testing.T) {
	assert.Equal(t, classify.ReasonOK, classify.ErrorReason(nil))
}

func TestRequestProblem(t *testing.T) {
	withURL := func(raw string) *http.Request {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		return &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
	}
	withHeader := func(name, value string) *http.Request {
		req := newRequest(t, http.MethodGet)
		req.Header[name] = []string{value} // raw, as a careless caller would
		return req
	}
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"well formed http", newRequest(t, http.MethodGet), ""},
		{"well formed https", withURL("https://api.example.test:8443/x?q=1"), ""},
		{"IPv6 host", withURL("http://[::1]:8080/"), ""},
		{"nil request", nil, "nil request"},
		{"nil URL", &http.Request{Method: http.MethodGet}, "nil URL"},
		{"bad scheme", withURL("ftp://api.example.test/file"), "unsupported scheme"},
		{"no scheme", withURL("//api.example.test/x"), "unsupported scheme"},
		{"unix scheme", withURL("unix:///var/run/app.sock"), "unsupported scheme"},
		{"no host", withURL("http:///path"), "no host"},
		{"relative URL", withURL("/v1/items"), "unsupported scheme"},
		{"header name with space", withHeader("Bad Name", "v"), "invalid header name"},
		{"header name with colon", withHeader("Bad:Name", "v"), "invalid header name"},
		{"empty header name", withHeader("", "v"), "invalid header name"},
		{"non-ASCII header name", withHeader("Héader", "v"), "invalid header name"},
		{"header name with every token symbol", withHeader("X-!#$%&'*+-.^_`|~09azAZ", "v"), ""},
		{"header value with \\n", withHeader("X-Note", "a\nInjected: yes"), "invalid header value"},
		{"header value with \\r", withHeader("X-Note", "a\rb"), "invalid header value"},
		{"header value with NUL", withHeader("X-Note", "a\x00b"), "invalid header value"},
		{"header value with DEL", withHeader("X-Note", "a\x7fb"), "invalid header value"},
		{"header value with tab", withHeader("X-Note", "a\tb"), ""},
		{"header value with UTF-8", withHeader("X-Note", "café"), ""},
		{"empty header value", withHeader("X-Note", ""), ""},
		{"nil header map", &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Host: "a.test"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			require.NotPanics(t, func() { got = classify.RequestProblem(tt.req) })
			assert.Equal(t, tt.want, got)
			if tt.want == "" || tt.req == nil {
				return
			}
			// Whatever error such a request met, another attempt fails again.
			for _, err := range []error{errors.New("boom"), dialRefused(), io.ErrUnexpectedEOF} {
				v := classify.Classify(tt.req, nil, err)
				assert.Equal(t, final, v.Outcome, "%v", err)
				assert.Equal(t, classify.ReasonInvalidRequest, v.Reason, "%v", err)
			}
		})
	}
}

func TestRequestProblemAgreesWithNetHTTP(t *testing.T) {
	// net/http refuses these before dialling; the classification of its
	// real error and RequestProblem must agree that they are final.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	bad := func(mutate func(*http.Request)) *http.Request {
		req := newRequest(t, http.MethodGet)
		req.URL.Host = "127.0.0.1:1"
		mutate(req)
		return req
	}
	tests := []struct {
		name string
		req  *http.Request
	}{
		{"bad scheme", bad(func(r *http.Request) { r.URL.Scheme = "ftp" })},
		{"no host", bad(func(r *http.Request) { r.URL.Host = "" })},
		{"header name with space", bad(func(r *http.Request) { r.Header["Bad Name"] = []string{"v"} })},
		{"header value with \\n", bad(func(r *http.Request) { r.Header["X-Note"] = []string{"a\nb"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.NotEmpty(t, classify.RequestProblem(tt.req))
			resp, err := tr.RoundTrip(tt.req)
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			assert.Equal(t, classify.ReasonInvalidRequest, classify.ErrorReason(err), "%v", err)
			assert.Equal(t, classify.Verdict{Outcome: final, Reason: classify.ReasonInvalidRequest},
				classify.Classify(tt.req, nil, err))
			assert.Equal(t, neutral, classify.ServerHealth(tt.req, nil, err))
		})
	}
}

// realTransport returns a fresh transport whose idle connections are
// closed when the test ends, so goleak finds no stray goroutines.
func realTransport(t *testing.T) *http.Transport {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// quietServer starts srv (over TLS when tls is set) with its error log
// discarded, and closes it when the test ends.
func quietServer(t *testing.T, h http.Handler, useTLS bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// hijackAndClose answers nothing: it reads the request head, writes prefix
// (possibly nothing) and resets the connection.
func hijackAndClose(prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = buf.WriteString(prefix)
		_ = buf.Flush()
		if tcp, ok := conn.(*net.TCPConn); ok && prefix == "" {
			_ = tcp.SetLinger(0) // RST rather than FIN
		}
		_ = conn.Close()
	}
}

// TestClassifyRealErrors classifies the errors net/http really returns
// against local servers, so the table above is not the only source of
// truth about their shapes.
func TestClassifyRealErrors(t *testing.T) {
	t.Run("connection refused, POST", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())

		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/orders", strings.NewReader("{}"))
		require.NoError(t, err)
		_, err = (&http.Client{Transport: realTransport(t)}).Do(req)
		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.Equal(t, classify.Verdict{Outcome: retryable, Reason: classify.ReasonRefused, NotSent: true},
			classify.Classify(req, nil, err), "%v", err)
		assert.Equal(t, unhealthy, classify.ServerHealth(req, nil, err))
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		srv := quietServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), true)
		req := newRequestCtx(t, context.Background(), http.MethodGet)
		req.URL, _ = url.Parse(srv.URL)
		_, err := (&http.Client{Transport: realTransport(t)}).Do(req)
		require.Error(t, err)
		var certErr *tls.CertificateVerificationError
		require.ErrorAs(t, err, &certErr, "current Go wraps the x509 error")
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
		assert.Equal(t, classify.Verdict{Outcome: final, Reason: classify.ReasonTLS}, classify.Classify(req, nil, err), "%v", err)
	})

	t.Run("certificate for another host", func(t *testing.T) {
		srv := quietServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), true)
		tr := srv.Client().Transport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		tr.TLSClientConfig.ServerName = "other.example.test"
		req := newRequest(t, http.MethodGet)
		req.URL, _ = url.Parse(srv.URL)
		_, err := (&http.Client{Transport: tr}).Do(req)
		require.Error(t, err)
		var hostErr x509.HostnameError
		require.ErrorAs(t, err, &hostErr)
		assert.Equal(t, classify.Verdict{Outcome: final, Reason: classify.ReasonTLS}, classify.Classify(req, nil, err), "%v", err)
	})

	t.Run("https to a plain server", func(t *testing.T) {
		srv := quietServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), false)
		req := newRequest(t, http.MethodGet)
		req.URL, _ = url.Parse(strings.Replace(srv.URL, "http://", "https://", 1))
		_, err := (&http.Client{Transport: realTransport(t)}).Do(req)
		require.Error(t, err)
		assert.ErrorIs(t, err, http.ErrSchemeMismatch)
		assert.Equal(t, classify.Verdict{Outcome: final, Reason: classify.ReasonTLS}, classify.Classify(req, nil, err), "%v", err)
	})

	t.Run("redirect loop", func(t *testing.T) {
		srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/again", http.StatusFound)
		}), false)
		req := newRequest(t, http.MethodGet)
		req.URL, _ = url.Parse(srv.URL)
		resp, err := (&http.Client{Transport: realTransport(t)}).Do(req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "stopped after 10 redirects")
		assert.Equal(t, classify.Verdict{Outcome: final, Reason: classify.ReasonRedirects}, classify.Classify(req, resp, err))
		assert.Equal(t, neutral, classify.ServerHealth(req, resp, err))
	})

	t.Run("connection reset before a response", func(t *testing.T) {
		srv := quietServer(t, hijackAndClose(""), false)
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			req := newRequest(t, method)
			req.URL, _ = url.Parse(srv.URL)
			_, err := realTransport(t).RoundTrip(req)
			require.Error(t, err)
			v := classify.Classify(req, nil, err)
			assert.Contains(t, []string{classify.ReasonReset, classify.ReasonEOF}, v.Reason, "%v", err)
			assert.False(t, v.NotSent, "the request was written")
			if method == http.MethodGet {
				assert.Equal(t, retryable, v.Outcome, "%v", err)
			} else {
				assert.Equal(t, final, v.Outcome, "POST may have been processed: %v", err)
			}
			assert.Equal(t, unhealthy, classify.ServerHealth(req, nil, err))
		}
	})

	t.Run("truncated response head", func(t *testing.T) {
		srv := quietServer(t, hijackAndClose("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"), false)
		req := newRequest(t, http.MethodGet)
		req.URL, _ = url.Parse(srv.URL)
		_, err := realTransport(t).RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, classify.Verdict{Outcome: retryable, Reason: classify.ReasonEOF}, classify.Classify(req, nil, err), "%v", err)
	})
}

// TestClassifyRealCancellation cancels a request that a local server holds,
// once by the caller and once by a per-attempt timeout, and classifies the
// error net/http really returns.
func TestClassifyRealCancellation(t *testing.T) {
	tests := []struct {
		name   string
		cause  error
		want   classify.Verdict
		health classify.Health
	}{
		{"caller cancels", nil, classify.Verdict{Outcome: final, Reason: classify.ReasonCanceled}, neutral},
		{"caller cancels with a cause", errors.New("shutting down"),
			classify.Verdict{Outcome: final, Reason: classify.ReasonCanceled}, neutral},
		{"attempt timeout", classify.ErrAttemptTimeout,
			classify.Verdict{Outcome: retryable, Reason: classify.ReasonTimeout}, unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived := make(chan struct{})
			release := make(chan struct{})
			srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(arrived)
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}), false)
			defer close(release) // runs before the server's cleanup

			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			req := newRequestCtx(t, ctx, http.MethodGet)
			req.URL, _ = url.Parse(srv.URL)
			go func() {
				<-arrived
				cancel(tt.cause)
			}()
			_, err := realTransport(t).RoundTrip(req)
			require.Error(t, err)
			assert.Equal(t, tt.want, classify.Classify(req, nil, err), "%v", err)
			assert.Equal(t, tt.health, classify.ServerHealth(req, nil, err), "%v", err)
		})
	}
}

// errRequestCanceled reads like net/http's error for a request whose
// Cancel channel was closed.
var errRequestCanceled = errors.New("net/http: request canceled")

// pastDeadlineNotDone is a context whose deadline has passed but whose
// timer has not ended it yet: it is not done.
type pastDeadlineNotDone struct{ context.Context }

func (pastDeadlineNotDone) Deadline() (time.Time, bool) { return time.Unix(0, 0), true }

// pastDeadlineButCancelled is a cancelled context whose deadline has
// passed, as http.Client.Timeout leaves a request's context when its own
// timer cancels it a moment before the context's deadline timer fires.
type pastDeadlineButCancelled struct{ context.Context }

func (pastDeadlineButCancelled) Deadline() (time.Time, bool) { return time.Unix(0, 0), true }

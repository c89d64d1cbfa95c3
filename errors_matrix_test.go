package rebound_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/percall"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// matrixRow is one way a call through the chain ends, provoked through
// http.Client.Do against real loopback servers.
type matrixRow struct {
	name string
	// call makes the call, after any set-up (tripping the breaker,
	// holding the host), and returns what http.Client.Do returned.
	call func(t *testing.T) (*http.Response, error)

	// For a call that ends on an error:
	is       []error // errors.Is must hold for each
	isNot    []error // and must not for these
	as       []any   // pointers errors.As must fill
	timeout  bool    // os.IsTimeout and net.Error's Timeout
	attempts int     // transport.Error.Attempts
	msg      string  // the message contains this, with "URL" for the server's URL
	// flattened: http.Client.Timeout may replace the error by a copy of
	// its text (net/http does so when its own timer fired first), so
	// errors.As cannot reach the *transport.Error every time.
	flattened bool

	// For a call that returns a response (nil error): its status and
	// what transport.Outcome says.
	status int
	stop   error
	// answered: the response came back as it was, and transport.Outcome
	// reports nothing (ok false).
	answered bool

	// why is the plain-words reason (transport.Why*) that the error's
	// Why, or the message of the stop transport.Outcome reports, carries.
	why string
	// retryWhy is the Why of the call's retry events, as logged.
	retryWhy string
}

// TestErrorMatrix provokes each way a call can end and checks what the
// caller can learn from it: which stop sentinel and cause errors.Is and
// errors.As reach, whether it is a timeout, how many attempts were sent
// and what the message says. Rows with timeouts wait out a real 20 ms.
func TestErrorMatrix(t *testing.T) {
	const d = 20 * time.Millisecond
	noWait := transport.Config{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}

	rows := []matrixRow{
		{
			name: "attempts exhausted on dropped connections",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixDropServer(t)
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(url)
			},
			is:       []error{transport.ErrAttemptsExhausted, io.EOF},
			isNot:    []error{classify.ErrNotSent},
			attempts: 4,
			msg:      `Get "URL": rebound: 4 attempts, attempts exhausted (unexpected eof): EOF`,
		},
		{
			name: "attempts exhausted on 503",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(url)
			},
			status: http.StatusServiceUnavailable, attempts: 4, stop: transport.ErrAttemptsExhausted,
		},
		{
			name: "connection refused",
			call: func(t *testing.T) (*http.Response, error) {
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(matrixClosedPort(t))
			},
			is:       []error{transport.ErrAttemptsExhausted, syscall.ECONNREFUSED},
			isNot:    []error{classify.ErrNotSent, transport.ErrRefused},
			as:       []any{new(*net.OpError)},
			attempts: 4,
			msg:      `Get "URL": rebound: 4 attempts, attempts exhausted (connection refused): dial tcp`,
		},
		{
			name: "deadline before the next attempt",
			call: func(t *testing.T) (*http.Response, error) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				t.Cleanup(cancel)
				slow := transport.Config{BaseDelay: 2 * time.Minute, MaxDelay: 2 * time.Minute, Jitter: transport.DecorrelatedJitter}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, matrixClosedPort(t), nil)
				return matrixClient(t, rebound.Policy{Retry: slow}).Do(req)
			},
			is:       []error{transport.ErrDeadline, syscall.ECONNREFUSED},
			isNot:    []error{context.DeadlineExceeded},
			timeout:  true,
			attempts: 1,
			msg:      `Get "URL": rebound: 1 attempt, deadline before next attempt (connection refused): dial tcp`,
		},
		{
			name: "deadline before the next attempt, response",
			call: func(t *testing.T) (*http.Response, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t.Cleanup(cancel)
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "59") // under the cap, over the deadline
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				return matrixClient(t, rebound.Policy{}).Do(req)
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrDeadline,
		},
		{
			name: "server wait over the cap",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "3600")
				return matrixClient(t, rebound.Policy{}).Get(url)
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrHintOverCap,
		},
		{
			name: "server wait overflowing a Duration",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusTooManyRequests, "99999999999999999999")
				return matrixClient(t, rebound.Policy{}).Get(url)
			},
			status: http.StatusTooManyRequests, attempts: 1, stop: transport.ErrHintOverCap,
		},
		{
			name: "body not replayable",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixDropServer(t)
				retry := noWait
				retry.MaxBodyBytes = 4
				req, _ := http.NewRequest(http.MethodPut, url, io.MultiReader(strings.NewReader("more than four bytes")))
				return matrixClient(t, rebound.Policy{Retry: retry}).Do(req)
			},
			is:       []error{transport.ErrBodyNotReplayable},
			attempts: 1,
			msg:      `Put "URL": rebound: 1 attempt, body not replayable`,
		},
		{
			name: "budget refuses the retry",
			call: func(t *testing.T) (*http.Response, error) {
				none := budget.Config{Ratio: budget.RatioConfig{Ratio: -1, MinPerSecond: -1}}
				return matrixClient(t, rebound.Policy{Retry: noWait, Budget: none}).Get(matrixClosedPort(t))
			},
			is:       []error{transport.ErrRefused, budget.ErrExhausted, syscall.ECONNREFUSED},
			isNot:    []error{classify.ErrNotSent, transport.ErrAttemptsExhausted},
			attempts: 1,
			msg:      `Get "URL": rebound: 1 attempt, refused by gate: budget: retry budget exhausted; last attempt (connection refused): dial tcp`,
		},
		{
			name: "budget refuses the retry, response",
			call: func(t *testing.T) (*http.Response, error) {
				none := budget.Config{Ratio: budget.RatioConfig{Ratio: -1, MinPerSecond: -1}}
				url := matrixStatusServer(t, http.StatusBadGateway, "")
				return matrixClient(t, rebound.Policy{Retry: noWait, Budget: none}).Get(url)
			},
			status: http.StatusBadGateway, attempts: 1, stop: budget.ErrExhausted,
		},
		{
			name: "breaker open",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixClosedPort(t)
				client := matrixClient(t, rebound.Policy{Retry: transport.Config{MaxAttempts: 1}, DisableBudget: true})
				for i := 0; ; i++ { // fail until the circuit opens, whatever the trip rule
					require.Less(t, i, 200, "the breaker never opened")
					if _, err := client.Get(url); errors.Is(err, breaker.ErrOpen) {
						break
					}
				}
				return client.Get(url)
			},
			is:       []error{transport.ErrRefused, breaker.ErrOpen, classify.ErrNotSent},
			isNot:    []error{syscall.ECONNREFUSED},
			as:       []any{new(*breaker.OpenError)},
			attempts: 0,
			msg:      `Get "URL": rebound: 0 attempts, refused by gate (not sent): breaker: circuit open for 127.0.0.1:`,
		},
		{
			name: "host isolated by an operator",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusOK, "")
				client := matrixClient(t, rebound.Policy{})
				require.NoError(t, client.Transport.(*rebound.Transport).Isolate(strings.TrimPrefix(url, "http://"), time.Hour))
				return client.Get(url)
			},
			is:       []error{transport.ErrRefused, rebound.ErrIsolated, classify.ErrNotSent},
			isNot:    []error{breaker.ErrOpen},
			as:       []any{new(*rebound.IsolatedError)},
			attempts: 0,
			msg:      `Get "URL": rebound: 0 attempts, refused by gate (not sent): rebound: 127.0.0.1:`,
		},
		{
			name: "host held by a wait hint",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusTooManyRequests, "30")
				client := matrixClient(t, rebound.Policy{Retry: transport.Config{MaxAttempts: 1}})
				for range 3 { // the third 429, with nothing admitted since the first, pauses the host for 30 s
					resp, err := client.Get(url)
					require.NoError(t, err)
					resp.Body.Close()
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				t.Cleanup(cancel)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				return client.Do(req)
			},
			is:       []error{transport.ErrRefused, transport.ErrHeld, classify.ErrNotSent},
			as:       []any{new(*admission.RefusedError)},
			attempts: 0,
			msg:      `Get "URL": rebound: 0 attempts, no turn before the deadline (not sent): admission: 127.0.0.1:`,
		},
		{
			name: "unknown host",
			call: func(t *testing.T) (*http.Response, error) {
				client := matrixClient(t, rebound.Policy{Retry: noWait}, matrixNXDOMAIN(t))
				return client.Get("http://nowhere.invalid/")
			},
			is:       []error{transport.ErrFinal},
			isNot:    []error{transport.ErrRefused, classify.ErrNotSent},
			as:       []any{new(*net.DNSError)},
			attempts: 1,
			msg:      `Get "http://nowhere.invalid/": rebound: 1 attempt, final outcome (dns): dial tcp: lookup nowhere.invalid`,
		},
		{
			name: "untrusted certificate",
			call: func(t *testing.T) (*http.Response, error) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
				srv.Config.ErrorLog = log.New(io.Discard, "", 0)
				srv.StartTLS()
				t.Cleanup(srv.Close)
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(srv.URL)
			},
			is:       []error{transport.ErrFinal},
			as:       []any{new(*tls.CertificateVerificationError)},
			attempts: 1,
			msg:      `Get "URL": rebound: 1 attempt, final outcome (tls): tls: failed to verify certificate`,
		},
		{
			name: "caller's deadline during an attempt",
			call: func(t *testing.T) (*http.Response, error) {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				t.Cleanup(cancel)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, matrixHungServer(t), nil)
				return matrixClient(t, rebound.Policy{Retry: noWait}).Do(req)
			},
			is:       []error{transport.ErrFinal, context.DeadlineExceeded},
			timeout:  true,
			attempts: 1,
			why:      transport.WhyCallerDeadline,
			msg:      `Get "URL": rebound: 1 attempt, the caller's deadline; set Retry.AttemptTimeout to retry hung attempts (deadline exceeded): context deadline exceeded`,
		},
		{
			name: "caller's deadline during an attempt, with an attempt timeout",
			call: func(t *testing.T) (*http.Response, error) {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				t.Cleanup(cancel)
				retry := noWait
				retry.AttemptTimeout = time.Minute
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, matrixHungServer(t), nil)
				return matrixClient(t, rebound.Policy{Retry: retry}).Do(req)
			},
			is:       []error{transport.ErrFinal, context.DeadlineExceeded},
			timeout:  true,
			attempts: 1,
			why:      transport.WhyCallerDeadlineCut,
			msg:      `Get "URL": rebound: 1 attempt, the caller's deadline (deadline exceeded): context deadline exceeded`,
		},
		{
			name: "http.Client.Timeout",
			call: func(t *testing.T) (*http.Response, error) {
				client := matrixClient(t, rebound.Policy{Retry: noWait})
				client.Timeout = d
				return client.Get(matrixHungServer(t))
			},
			is:        []error{context.DeadlineExceeded},
			timeout:   true,
			attempts:  1,
			why:       transport.WhyCallerDeadline,
			msg:       `Get "URL": rebound: 1 attempt, the caller's deadline; set Retry.AttemptTimeout to retry hung attempts (deadline exceeded): context deadline exceeded`,
			flattened: true,
		},
		{
			name: "ResponseHeaderTimeout",
			call: func(t *testing.T) (*http.Response, error) {
				retry := noWait
				retry.MaxAttempts = 2
				client := matrixClient(t, rebound.Policy{Retry: retry}, func(base *http.Transport) { base.ResponseHeaderTimeout = d })
				return client.Get(matrixHungServer(t))
			},
			is:       []error{transport.ErrAttemptsExhausted, context.DeadlineExceeded},
			timeout:  true,
			attempts: 2,
			msg:      `Get "URL": rebound: 2 attempts, attempts exhausted (timeout): net/http: timeout awaiting response headers`,
		},
		{
			name: "AttemptTimeout",
			call: func(t *testing.T) (*http.Response, error) {
				retry := noWait
				retry.MaxAttempts = 2
				retry.AttemptTimeout = d
				return matrixClient(t, rebound.Policy{Retry: retry}).Get(matrixHungServer(t))
			},
			is:       []error{transport.ErrAttemptsExhausted, classify.ErrAttemptTimeout},
			timeout:  true,
			attempts: 2,
			msg:      `Get "URL": rebound: 2 attempts, attempts exhausted (timeout): classify: attempt timed out`,
		},
		{
			name: "POST 503 toward a host not keys_honored",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				return matrixClient(t, rebound.Policy{Retry: noWait}).Post(url, "text/plain", strings.NewReader("charge"))
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrFinal,
			why: transport.WhyNotRepeatedKey,
		},
		{
			name: "POST 503 with the caller's key toward a host not keys_honored",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("charge"))
				req.Header.Set("Idempotency-Key", "caller-key-1")
				return matrixClient(t, rebound.Policy{Retry: noWait}).Do(req)
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrFinal,
			why: transport.WhyNotRepeatedKey,
		},
		{
			name: "POST 503 without keys",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				return matrixClient(t, rebound.Policy{Retry: noWait, DisableIdempotencyKeys: true}).Post(url, "text/plain", strings.NewReader("charge"))
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrFinal,
			why: transport.WhyNotRepeated,
		},
		{
			name: "POST 503 with the caller's key toward a keys_honored host",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("charge"))
				req.Header.Set("Idempotency-Key", "caller-key-2")
				return matrixClient(t, rebound.Policy{Retry: noWait, KeysHonored: true}).Do(req)
			},
			status: http.StatusServiceUnavailable, attempts: 4, stop: transport.ErrAttemptsExhausted,
			retryWhy: transport.WhyCallerKey,
		},
		{
			name: "POST 503 with a generated key toward a keys_honored host",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				return matrixClient(t, rebound.Policy{Retry: noWait, KeysHonored: true}).Post(url, "text/plain", strings.NewReader("charge"))
			},
			status: http.StatusServiceUnavailable, attempts: 4, stop: transport.ErrAttemptsExhausted,
			retryWhy: transport.WhyGeneratedKey,
		},
		{
			name: "POST 503 with the caller's key given with WithKey toward a keys_honored host",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				req, _ := http.NewRequestWithContext(percall.Key(t.Context(), "caller-key-3"), http.MethodPost, url, strings.NewReader("charge"))
				return matrixClient(t, rebound.Policy{Retry: noWait, KeysHonored: true}).Do(req)
			},
			status: http.StatusServiceUnavailable, attempts: 4, stop: transport.ErrAttemptsExhausted,
			retryWhy: transport.WhyCallerKey,
		},
		{
			name: "GET 404",
			call: func(t *testing.T) (*http.Response, error) {
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(matrixStatusServer(t, http.StatusNotFound, ""))
			},
			status: http.StatusNotFound, answered: true,
		},
		{
			name: "GET 501",
			call: func(t *testing.T) (*http.Response, error) {
				return matrixClient(t, rebound.Policy{Retry: noWait}).Get(matrixStatusServer(t, http.StatusNotImplemented, ""))
			},
			status: http.StatusNotImplemented, answered: true,
		},
		{
			name: "POST 404",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusNotFound, "")
				return matrixClient(t, rebound.Policy{Retry: noWait}).Post(url, "text/plain", strings.NewReader("charge"))
			},
			status: http.StatusNotFound, answered: true,
		},
		{
			name: "POST on a dropped connection",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixDropServer(t)
				return matrixClient(t, rebound.Policy{Retry: noWait}).Post(url, "text/plain", strings.NewReader("charge"))
			},
			is:       []error{transport.ErrFinal, io.EOF},
			isNot:    []error{classify.ErrNotSent, transport.ErrAttemptsExhausted},
			attempts: 1,
			why:      transport.WhyNotRepeatedKey,
			msg:      `Post "URL": rebound: 1 attempt, not repeated: a non-idempotent request to a host not declared keys_honored (see Policy.KeysHonored) (unexpected eof): EOF`,
		},
		{
			name: "503 with one attempt allowed",
			call: func(t *testing.T) (*http.Response, error) {
				url := matrixStatusServer(t, http.StatusServiceUnavailable, "")
				req, _ := http.NewRequestWithContext(percall.NoRetry(context.Background()), http.MethodGet, url, nil)
				return matrixClient(t, rebound.Policy{Retry: noWait}).Do(req)
			},
			status: http.StatusServiceUnavailable, attempts: 1, stop: transport.ErrAttemptsExhausted,
			why: transport.WhyOneAttempt,
		},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			resp, err := row.call(t)
			defer matrixAgree(t, resp, err, row.retryWhy)
			if row.status != 0 {
				require.NoError(t, err)
				defer resp.Body.Close()
				assert.Equal(t, row.status, resp.StatusCode)
				attempts, stop, ok := transport.Outcome(resp)
				if row.answered {
					assert.False(t, ok, "transport.Outcome: handed back as it came")
					return
				}
				require.True(t, ok, "transport.Outcome knows why the loop stopped")
				assert.Equal(t, row.attempts, attempts, "attempts")
				assert.ErrorIs(t, stop, row.stop)
				if row.why != "" {
					assert.Equal(t, "transport: "+row.why, stop.Error())
				}
				return
			}
			require.Error(t, err)
			require.Nil(t, resp)
			for _, target := range row.is {
				assert.ErrorIs(t, err, target)
			}
			for _, target := range row.isNot {
				assert.NotErrorIs(t, err, target)
			}
			for _, target := range row.as {
				assert.True(t, errors.As(err, target), "errors.As(err, %T)", target)
			}
			assert.Equal(t, row.timeout, os.IsTimeout(err), "os.IsTimeout")
			ne, ok := err.(net.Error)
			require.True(t, ok, "%T is a net.Error", err)
			assert.Equal(t, row.timeout, ne.Timeout(), "net.Error.Timeout")
			var te *transport.Error
			if errors.As(err, &te) {
				assert.Equal(t, row.attempts, te.Attempts, "attempts sent")
				assert.Equal(t, row.why, te.Why, "Error.Why")
			} else {
				assert.True(t, row.flattened, "errors.As reaches the *transport.Error")
			}
			var ue *url.Error
			if errors.As(err, &ue) && ue.URL != "" {
				assert.Contains(t, err.Error(), strings.ReplaceAll(row.msg, "URL", ue.URL))
			}
		})
	}
}

// TestChainUpgradeKeepsTheConnection: a 101 Switching Protocols answer
// comes through the whole chain (keys, loop, budget, breaker) with its
// io.ReadWriteCloser body, as WebSocket clients built on http.Client need,
// with the attempt timeout of the sample policy file and without one. The
// server hijacks the connection and echoes.
func TestChainUpgradeKeepsTheConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		io.Copy(conn, rw)
	}))
	defer srv.Close()
	for name, retry := range map[string]transport.Config{
		"attempt timeout":    {AttemptTimeout: 2 * time.Second},
		"no attempt timeout": {},
	} {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: newTransport(t, rebound.WithPolicy(rebound.Policy{Retry: retry}))}
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			require.True(t, ok, "a 101's body is an io.ReadWriteCloser (got %T)", resp.Body)
			br := bufio.NewReader(rwc)
			for _, msg := range []string{"ping\n", "pong\n"} {
				_, err := io.WriteString(rwc, msg)
				require.NoError(t, err)
				got, err := br.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, msg, got)
			}
		})
	}
}

// matrixClient returns a client whose transport is the chain with policy
// p over a fresh pooled base (adjusted by each of base), closed at the end
// of the test.
func matrixClient(t *testing.T, p rebound.Policy, base ...func(*http.Transport)) *http.Client {
	t.Helper()
	b := cleanhttp.DefaultPooledTransport()
	for _, f := range base {
		f(b)
	}
	t.Cleanup(b.CloseIdleConnections)
	log := &matrixLog{}
	matrixLogs.Store(t, log)
	t.Cleanup(func() { matrixLogs.Delete(t) })
	return &http.Client{Transport: rebound.NewTransport(b, rebound.WithPolicy(p),
		rebound.WithObserver(rebound.LogObserver(slog.New(log))))}
}

// matrixLogs holds the log of each test's matrixClient.
var matrixLogs sync.Map // *testing.T -> *matrixLog

// matrixLog is a slog.Handler that keeps every record, at every level.
type matrixLog struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *matrixLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *matrixLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *matrixLog) WithGroup(string) slog.Handler            { return h }
func (h *matrixLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}

// lines returns the records logged so far, each as its message and its
// attributes' values as text.
func (h *matrixLog) lines() []matrixLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]matrixLine, 0, len(h.records))
	for _, r := range h.records {
		l := matrixLine{msg: r.Message, attrs: map[string]string{}}
		r.Attrs(func(a slog.Attr) bool {
			l.attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, l)
	}
	return out
}

type matrixLine struct {
	msg   string
	attrs map[string]string
}

// matrixAgree checks that the log of the test's last call says what the
// call's error, or transport.Outcome of its response, says: a call given
// up is logged "give up" (or, refused before anything was sent, "refused")
// with the same attempts, stop and why; a response handed back as it came
// is not logged as a give-up; the retries carry retryWhy.
func matrixAgree(t *testing.T, resp *http.Response, err error, retryWhy string) {
	t.Helper()
	v, ok := matrixLogs.Load(t)
	require.True(t, ok, "the row used matrixClient")
	lines := v.(*matrixLog).lines()
	// The row's own call is the last: find its ending line.
	var end *matrixLine
	for i := len(lines) - 1; i >= 0; i-- {
		switch lines[i].msg {
		case "rebound: give up", "rebound: retry refused", "rebound: refused", "rebound: final response, not retried":
			end = &lines[i]
		}
		if end != nil {
			break
		}
	}
	if retryWhy != "" {
		var n int
		for _, l := range lines {
			if l.msg == "rebound: retry" {
				n++
				assert.Equal(t, retryWhy, l.attrs["why"], "the retry line says what licensed it")
			}
		}
		assert.Positive(t, n, "retries were logged")
	}
	var (
		attempts  int
		stop, why string
	)
	if err != nil {
		te, ok := errors.AsType[*transport.Error](err)
		if !ok {
			return // flattened by http.Client.Timeout: nothing to compare
		}
		attempts, stop, why = te.Attempts, te.Stop, te.Why
	} else {
		n, s, ok := transport.Outcome(resp)
		if !ok || s == nil {
			if end != nil {
				assert.NotEqual(t, "rebound: give up", end.msg, "Outcome says nothing was given up; so must the log")
			}
			return
		}
		attempts, stop = n, matrixStopLabel(s)
		defer func() {
			if end == nil {
				return
			}
			if st, ok := end.attrs["status"]; ok {
				assert.Equal(t, strconv.Itoa(resp.StatusCode), st, "the status logged is the one returned")
			}
		}()
		if w := strings.TrimPrefix(s.Error(), "transport: "); !strings.HasPrefix(w, stop) {
			why = w
		}
	}
	require.NotNil(t, end, "the give-up is logged")
	switch {
	case attempts == 0:
		assert.Equal(t, "rebound: refused", end.msg)
	case stop == transport.StopRefused || stop == transport.StopHeld:
		assert.Equal(t, "rebound: retry refused", end.msg, "the retry announced was not made")
		assert.Equal(t, strconv.Itoa(attempts), end.attrs["attempts"], "attempts")
	default:
		assert.Equal(t, "rebound: give up", end.msg)
		assert.Equal(t, strconv.Itoa(attempts), end.attrs["attempts"], "attempts")
	}
	assert.Equal(t, stop, end.attrs["stop"], "stop")
	assert.Equal(t, why, end.attrs["why"], "why")
}

// matrixStopLabel returns the Stop constant whose sentinel stop matches.
func matrixStopLabel(stop error) string {
	for _, s := range []error{transport.ErrRefused, transport.ErrFinal, transport.ErrAttemptsExhausted, transport.ErrDeadline,
		transport.ErrHintOverCap, transport.ErrBodyNotReplayable, transport.ErrResponseTooLarge, transport.ErrCanceledWhileWaiting} {
		if errors.Is(stop, s) {
			if s == transport.ErrRefused && errors.Is(stop, transport.ErrHeld) {
				return transport.StopHeld
			}
			return strings.TrimPrefix(s.Error(), "transport: ")
		}
	}
	return ""
}

// matrixStatusServer answers every request with code and, when retryAfter is
// not empty, that Retry-After.
func matrixStatusServer(t *testing.T, code int, retryAfter string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// matrixDropServer reads each request, then closes the connection without an
// answer.
func matrixDropServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// matrixHungServer accepts requests and never answers them.
func matrixHungServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// matrixClosedPort returns the URL of a loopback port nothing listens on: every
// dial is refused.
func matrixClosedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// matrixNXDOMAIN makes the base transport resolve names through a DNS
// server on loopback that answers every query "no such name" (NXDOMAIN),
// so the unknown-host row does not depend on the machine's resolver.
func matrixNXDOMAIN(t *testing.T) func(*http.Transport) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if reply := nxdomain(buf[:n]); reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
	return func(base *http.Transport) {
		base.DialContext = (&net.Dialer{Timeout: 5 * time.Second, Resolver: resolver}).DialContext
	}
}

// nxdomain returns the NXDOMAIN answer to a DNS query: its ID and its one
// question, flags QR, RD as asked, RA, RCODE 3. It returns nil for a
// packet that is not a one-question query.
func nxdomain(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || q[4] != 0 || q[5] != 1 {
		return nil
	}
	end := 12
	for end < len(q) && q[end] != 0 { // the question's name, label by label
		end += int(q[end]) + 1
	}
	end += 1 + 4 // the root label, then QTYPE and QCLASS
	if end > len(q) {
		return nil
	}
	reply := make([]byte, 0, end)
	reply = append(reply, q[0], q[1], 0x80|q[2]&0x79, 0x80|3, 0, 1, 0, 0, 0, 0, 0, 0)
	return append(reply, q[12:end]...)
}

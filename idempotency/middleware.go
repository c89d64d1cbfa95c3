package idempotency

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of MiddlewareConfig.
const (
	DefaultTTL              = 24 * time.Hour
	DefaultLease            = time.Minute
	DefaultRetryAfter       = time.Second
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxResponseBytes = 1 << 20
)

// DefaultAPIKeyHeaders are the request headers that the default scope
// treats as credentials besides Authorization, Proxy-Authorization and
// Cookie (MiddlewareConfig.APIKeyHeaders).
var DefaultAPIKeyHeaders = []string{"X-Api-Key", "Api-Key", "X-Auth-Token"}

// MiddlewareConfig configures Middleware. The zero value is the documented
// default of every field; Middleware normalises a copy.
type MiddlewareConfig struct {
	// Methods are the request methods whose keys are honoured; requests
	// with other methods pass through untouched. Nil means POST and PATCH;
	// an empty non-nil slice means that no method's keys are. Methods are
	// matched exactly (upper case, as clients send them).
	Methods []string

	// Required makes a request with one of Methods and no key an error
	// (400, ProblemMissingKey). The zero value lets it through unprotected.
	Required bool

	// MaxKeyLength is the longest key accepted, in bytes after unquoting.
	// Zero or negative means 255.
	MaxKeyLength int

	// MaxBodyBytes is the largest request body that is fingerprinted; a
	// keyed request with a larger body is refused with 413 (hashing part
	// of it would let two different requests share a fingerprint). Zero or
	// negative means 1 MiB.
	MaxBodyBytes int64

	// MaxResponseBytes is the largest response body stored for replay. A
	// larger response is still sent in full, and its key is completed as
	// NotReplayable: a repeat gets 410 Gone (ProblemNotReplayable), because
	// running the handler again would repeat its effect. Zero or
	// negative means 1 MiB.
	MaxResponseBytes int

	// TTL is how long a completed response is kept for replay. Zero or
	// negative means 24 hours.
	TTL time.Duration

	// Lease is how long a key stays reserved after its holder was last
	// heard from. While the handler runs, the middleware renews the lease
	// every Lease/3 (Store.Renew), so a slow handler keeps its key however
	// long it runs; the lease ends only when the holder's process died or
	// could not reach the store for about a Lease, and then its late
	// response is not stored (DecisionLeaseLost). Zero or negative means
	// 1 minute.
	Lease time.Duration

	// RetryAfter is the wait advertised with 409 (a request with the key
	// is in flight) and 503 (the store failed or is full), rounded up to
	// whole seconds. Zero or negative means 1 second.
	RetryAfter time.Duration

	// Scope returns the namespace of a request's key, so that one caller
	// can never receive another's stored response or spend its keys. The
	// middleware stores a key under StoreKey(Scope(r), key). A service that
	// knows its authenticated principal (a user or tenant id set by its
	// authentication middleware) should set Scope to return it: that is
	// exact, where the default can only tell credentials apart. Nil means
	// CallerScope with APIKeyHeaders: a digest of the Host and of every
	// credential the request carries.
	Scope func(r *http.Request) string

	// APIKeyHeaders are the headers the default Scope treats as
	// credentials, besides Authorization, Proxy-Authorization, Cookie and
	// the TLS client certificate. Nil means DefaultAPIKeyHeaders; an empty
	// non-nil slice means none. Unused when Scope is set.
	APIKeyHeaders []string

	// Release, when non-nil, decides from the status the handler wrote
	// whether to release the key (nothing stored; a retry runs the
	// handler again) rather than store the response. Set it only for
	// handlers that have no effect when they answer such a status; a
	// handler that knows it did nothing can instead call the package's
	// Release function. Nil means that every status is stored, 5xx
	// included: a 500 may come after the effect.
	Release func(status int) bool

	// ReleaseAborted makes a handler that panicked, took over the
	// connection, or returned without writing anything after its client
	// went away release its key (a retry runs it again), instead of
	// completing it as OutcomeUnknown (a repeat gets 500,
	// ProblemOutcomeUnknown). Set it only when such handlers cannot have
	// had an effect. The zero value keeps the key.
	ReleaseAborted bool

	// OnDecision, when non-nil, is called once per request with a keyed
	// method with what the middleware did, after it did it. Nil costs
	// nothing.
	OnDecision func(r *http.Request, d Decision)

	// Logger receives store failures and lost leases, at most one line
	// per request: ERROR when the store failed a request whose client
	// still waits (it was answered 503), WARN when a response could not be
	// stored or a lease renewal failed (one line when the handler ends,
	// with the renewals' first error), DEBUG when the failure concerned a
	// client that had gone (its request's context was cancelled while it
	// waited, on its key's lock, say). Nil means slog.Default().
	Logger *slog.Logger
}

// ReleaseRetryable reports whether status asks the client to try again
// (5xx, 429 Too Many Requests, 408 Request Timeout). It is a
// MiddlewareConfig.Release for handlers that have no effect whenever they
// answer such a status; with it, a handler that answers 500 after its
// effect runs again on the retry.
func ReleaseRetryable(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// Middleware returns server middleware that makes requests with an
// idempotency key take effect once. For a request with one of cfg.Methods
// and an Idempotency-Key (or X-Idempotency-Key) header, it:
//
//   - parses the key (see ParseKey; 400 when invalid or repeated);
//   - reads the body, up to cfg.MaxBodyBytes (413 beyond), and hands the
//     handler an identical copy;
//   - fingerprints method, path, query, Content-Type, Content-Encoding and
//     body, and scopes the key with cfg.Scope (by default, a digest of the
//     Host and of every credential: see CallerScope);
//   - reserves the key in store, for cfg.Lease, renewed while the handler
//     runs. If it was free, the handler runs while its response is
//     recorded, and the response is stored for cfg.TTL whatever its
//     status. A handler that panics, hijacks the connection, switches
//     protocols, or returns without writing after its client left,
//     completes the key as OutcomeUnknown (a panic then continues). A
//     handler that calls Release(r) has its key released instead;
//   - if the key was taken: a different fingerprint gets 422; a request
//     still in flight gets 409 with Retry-After; a stored response is
//     replayed with "Idempotent-Replayed: true", without calling the
//     handler; a response that could not be stored gets 410; an unknown
//     outcome gets 500;
//   - if the store fails or is full, answers 503 with Retry-After, without
//     running the handler.
//
// The middleware's own answers have application/problem+json bodies
// (RFC 9457) whose types are the Problem constants.
//
// When store implements TxStore, each request runs in one of its
// transactions instead, and its response is sent after the commit: see
// TxStore. A nil store means a new MemoryStore with default bounds; a nil
// handler means http.NotFoundHandler.
func Middleware(store Store, cfg MiddlewareConfig) func(http.Handler) http.Handler {
	if store == nil {
		store = NewMemoryStore(MemoryConfig{})
	}
	cfg = cfg.normalize()
	tx, _ := store.(TxStore)
	return func(next http.Handler) http.Handler {
		if next == nil {
			next = http.NotFoundHandler()
		}
		m := &middleware{next: next, store: store, tx: tx, cfg: cfg}
		m.renewer.m = m
		return m
	}
}

// normalize returns c with defaults in place of zero values.
func (c MiddlewareConfig) normalize() MiddlewareConfig {
	if c.Methods != nil {
		c.Methods = append(make([]string, 0, len(c.Methods)), c.Methods...)
	}
	if c.APIKeyHeaders == nil {
		c.APIKeyHeaders = DefaultAPIKeyHeaders
	}
	c.APIKeyHeaders = canonicalHeaders(c.APIKeyHeaders)
	if c.MaxKeyLength <= 0 {
		c.MaxKeyLength = DefaultMaxKeyLength
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// middleware is the handler Middleware returns.
type middleware struct {
	next    http.Handler
	store   Store
	tx      TxStore // store, when it can run a request in a transaction
	cfg     MiddlewareConfig
	renewer renewer
}

// ServeHTTP implements the middleware. See Middleware.
func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !m.keyed(r.Method) {
		m.next.ServeHTTP(w, r)
		return
	}
	raw, present, err := keyHeader(r.Header)
	if err == nil && !present {
		if m.cfg.Required {
			m.refuse(w, r, DecisionInvalidKey, http.StatusBadRequest, ProblemMissingKey,
				"this request needs an "+HeaderKey+" header", 0)
			return
		}
		m.decide(r, DecisionPass)
		m.next.ServeHTTP(w, r)
		return
	}
	var key string
	if err == nil {
		key, err = parseKey(raw, m.cfg.MaxKeyLength)
	}
	if err != nil {
		m.refuse(w, r, DecisionInvalidKey, http.StatusBadRequest, ProblemInvalidKey, err.Error(), 0)
		return
	}
	body, err := readBody(r, m.cfg.MaxBodyBytes)
	switch {
	case errors.Is(err, errBodyTooLarge):
		m.refuse(w, r, DecisionBodyTooLarge, http.StatusRequestEntityTooLarge, ProblemBodyTooLarge, err.Error(), 0)
		return
	case err != nil:
		m.refuse(w, r, DecisionInvalidKey, http.StatusBadRequest, "about:blank", "reading the request body: "+err.Error(), 0)
		return
	}
	fp := fingerprint(r, body)
	skey := m.storeKey(r, key)
	if m.tx != nil {
		m.serveTx(w, r, body, key, skey, fp)
		return
	}

	start := time.Now()
	rec, reserved, err := m.store.Reserve(r.Context(), skey, fp, m.cfg.Lease)
	if err == nil && reserved {
		m.execute(w, r, body, skey, rec.Token, start)
		return
	}
	m.answerTaken(w, r, key, fp, rec, err)
}

// answerTaken answers a request whose key could not be reserved: err is
// Reserve's error, or rec the record that holds the key.
func (m *middleware) answerTaken(w http.ResponseWriter, r *http.Request, key string, fp Fingerprint, rec Record, err error) {
	switch {
	case errors.Is(err, ErrStoreFull):
		m.refuse(w, r, DecisionStoreFull, http.StatusServiceUnavailable, ProblemUnavailable,
			"the idempotency store is full; the request was not processed", m.cfg.RetryAfter)
	case err != nil:
		m.logFailure(r, "idempotency: reserve failed", key, err)
		m.refuse(w, r, DecisionStoreError, http.StatusServiceUnavailable, ProblemUnavailable,
			"the idempotency store is unavailable; the request was not processed", m.cfg.RetryAfter)
	case rec.Fingerprint != fp:
		m.refuse(w, r, DecisionKeyReused, http.StatusUnprocessableEntity, ProblemKeyReused,
			"this idempotency key was used for a different request", 0)
	case rec.InFlight():
		m.refuse(w, r, DecisionInFlight, http.StatusConflict, ProblemInFlight,
			"a request with this idempotency key is being processed", m.cfg.RetryAfter)
	case rec.Response.OutcomeUnknown:
		m.refuse(w, r, DecisionOutcomeUnknown, http.StatusInternalServerError, ProblemOutcomeUnknown,
			"a request with this idempotency key was processed, but its outcome is unknown; it will not be processed again", 0)
	case rec.Response.NotReplayable:
		m.refuse(w, r, DecisionNotReplayable, http.StatusGone, ProblemNotReplayable,
			"a request with this idempotency key was processed, but its response was not stored", 0)
	case rec.Response.Status < 200 || rec.Response.Status > 999:
		// A Store returned a record no handler could have produced (a bug
		// or a corrupt entry): answering it would panic in WriteHeader or
		// send a bare informational status. Refuse, and say why.
		m.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "idempotency: stored response has an invalid status",
			slog.String("key", key), slog.Int("status", rec.Response.Status))
		m.refuse(w, r, DecisionStoreError, http.StatusInternalServerError, ProblemInvalidRecord,
			"the stored response for this idempotency key is invalid", 0)
	default:
		replay(w, rec.Response)
		m.decide(r, DecisionReplayed)
	}
}

// logFailure logs a store failure that ends request r with a 503: at
// ERROR, or at DEBUG when r's client has gone (a cancelled wait is not a
// failing store, and nobody reads the answer).
func (m *middleware) logFailure(r *http.Request, msg, key string, err error) {
	level := slog.LevelError
	if r.Context().Err() != nil {
		level = slog.LevelDebug
		msg += " after the client left"
	}
	m.cfg.Logger.LogAttrs(r.Context(), level, msg, slog.String("key", key), slog.Any("error", err))
}

// RequestKey returns the idempotency key of the request a handler serves
// under Middleware, as the middleware parsed it (unquoted), its scope
// (MiddlewareConfig.Scope's value: by default a digest of the caller's
// credentials), and true; for any other request (no key, a method whose
// keys are not honoured, not under Middleware) it returns "", "", false.
// It reads r's context, so it also works on a request derived from r.
//
// It is the server side's accessor: the key a client sent. The client
// side's WithKey and KeyFromContext carry a key toward an outgoing
// request, so inside a handler KeyFromContext(r.Context()) reports only a
// key the handler itself set for a call it makes (use DerivedKey for
// those).
func RequestKey(r *http.Request) (key, scope string, ok bool) {
	if r == nil {
		return "", "", false
	}
	skey, ok := StoreKeyOf(r.Context())
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(skey, '\n')
	return skey[i+1:], skey[:i], true
}

// execution holds what one run of the handler needs, allocated together:
// its request, context and body, the response recorder and the lease
// renewal.
type execution struct {
	req      http.Request // the handler's copy of the request
	ctx      execContext
	body     bodyReader
	rec      recorder
	released atomic.Bool // the handler called Release

	// Lease renewal (see renewer).
	m          *middleware
	storeCtx   context.Context // not cancelled when the client goes
	skey       string
	token      uint64
	prev, next *execution    // neighbours in renewer.running; guarded by renewer.mu
	listed     bool          // in renewer.running, not on a timer of its own
	mu         sync.Mutex    // guards the fields below
	timer      *time.Timer   // x's own renewal timer, when not listed
	inflight   chan struct{} // closed when the renewal in progress ends; nil when none
	stopped    bool
	lost       bool  // Renew found the lease gone
	renewErr   error // the first failed renewal's error
	renewFails int   // failed renewals
}

// execContext is the handler's request context: the request's own, plus
// the execution, which Release finds in it. It is part of the execution's
// allocation, so carrying the execution costs nothing extra.
type execContext struct {
	context.Context
	x *execution
}

// execKey is the context key of the running execution.
type execKey struct{}

// Value returns the execution for execKey, and otherwise asks the parent.
func (c *execContext) Value(key any) any {
	if key == (execKey{}) {
		return c.x
	}
	return c.Context.Value(key)
}

// bodyReader is a restored request body.
type bodyReader struct{ bytes.Reader }

// Close does nothing: the body is in memory.
func (*bodyReader) Close() error { return nil }

// Release tells the middleware that the handler serving r has had no
// effect and will answer something a retry should not be stuck with (503
// when overloaded, say): when the handler returns, its key is released
// instead of completed, so the next request with the key runs the handler
// afresh. It may be called at any time before the handler returns, from
// the handler or anything it calls with r or a request derived from it,
// and reports whether r is a keyed request the middleware is running.
//
// Call it only when nothing happened: releasing a key after an effect
// lets a retry repeat it. In transactional mode (TxStore) the transaction
// is also rolled back.
func Release(r *http.Request) bool {
	x, ok := r.Context().Value(execKey{}).(*execution)
	if !ok {
		return false
	}
	x.released.Store(true)
	return true
}

// newExecution prepares the handler's request and recorder for a reserved
// key. In buffered mode the recorder sends nothing until told to.
func (m *middleware) newExecution(w http.ResponseWriter, r *http.Request, ctx context.Context, body []byte, buffered bool) (*execution, *http.Request) {
	x := &execution{m: m, rec: recorder{w: w, limit: m.cfg.MaxResponseBytes, buffered: buffered}}
	x.ctx = execContext{Context: ctx, x: x}
	// WithContext is inlined, so its copy stays on the stack and the
	// handler's request is part of the execution's allocation.
	x.req = *r.WithContext(&x.ctx)
	in := &x.req
	in.Body = http.NoBody
	if len(body) > 0 {
		x.body.Reset(body)
		in.Body = &x.body
	}
	in.ContentLength = int64(len(body))
	return x, in
}

// execute runs the handler for a freshly reserved key, renewing its lease,
// and then completes or releases the reservation.
func (m *middleware) execute(w http.ResponseWriter, r *http.Request, body []byte, skey string, token uint64, reserved time.Time) {
	x, in := m.newExecution(w, r, r.Context(), body, false)
	rec := &x.rec
	// Store operations after the handler must happen even when the client
	// has gone: that is when a retry is most likely.
	x.storeCtx = context.WithoutCancel(r.Context())
	x.skey, x.token = skey, token
	m.renewer.add(x, reserved)

	returned := false
	defer func() {
		if returned {
			return
		}
		// The handler panicked; the panic continues once this returns.
		m.renewer.remove(x)
		if x.released.Load() || m.cfg.ReleaseAborted {
			m.release(x.storeCtx, r, x)
			return
		}
		m.complete(x.storeCtx, r, x, rec.unknown(http.StatusInternalServerError))
	}()
	m.next.ServeHTTP(rec, in)
	returned = true
	m.renewer.remove(x)

	aborted := rec.status == 0 && !rec.hijacked && !rec.upgraded && r.Context().Err() != nil
	switch {
	case x.released.Load():
		m.release(x.storeCtx, r, x)
	case rec.hijacked || rec.upgraded || aborted:
		if m.cfg.ReleaseAborted {
			m.release(x.storeCtx, r, x)
			return
		}
		m.complete(x.storeCtx, r, x, rec.unknown(http.StatusOK))
	case m.cfg.Release != nil && m.cfg.Release(rec.finalStatus()):
		m.release(x.storeCtx, r, x)
	default:
		m.complete(x.storeCtx, r, x, rec.response())
	}
}

// complete stores resp for skey and reports the decision.
func (m *middleware) complete(ctx context.Context, r *http.Request, x *execution, resp *Response) {
	err := m.store.Complete(ctx, x.skey, x.token, resp, m.cfg.TTL)
	if err != nil {
		m.logEnd(ctx, r, x, "idempotency: response not stored", err)
		m.decide(r, DecisionLeaseLost)
		return
	}
	m.logEnd(ctx, r, x, "", nil)
	if resp.OutcomeUnknown {
		m.decide(r, DecisionAborted)
		return
	}
	m.decide(r, DecisionExecuted)
}

// release frees skey and reports the decision.
func (m *middleware) release(ctx context.Context, r *http.Request, x *execution) {
	if err := m.store.Release(ctx, x.skey, x.token); err != nil && !errors.Is(err, ErrLeaseLost) {
		m.logEnd(ctx, r, x, "idempotency: release failed", err)
	} else {
		m.logEnd(ctx, r, x, "", nil)
	}
	m.decide(r, DecisionReleased)
}

// logEnd writes the one line a run of the handler may log, when it ends:
// msg and err when the final store call failed, else a summary of failed
// lease renewals, if any; nothing otherwise. x's renewals have stopped.
func (m *middleware) logEnd(ctx context.Context, r *http.Request, x *execution, msg string, err error) {
	if err == nil && x.renewFails == 0 {
		return
	}
	attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path)}
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
	} else {
		msg = "idempotency: lease renewal failed while the handler ran"
	}
	if x.renewFails > 0 {
		attrs = append(attrs, slog.Int("renewals_failed", x.renewFails), slog.Any("renewal_error", x.renewErr),
			slog.Bool("lease_lost", x.lost))
	}
	m.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// refuse answers with a problem and reports the decision.
func (m *middleware) refuse(w http.ResponseWriter, r *http.Request, d Decision, status int, typ, detail string, retryAfter time.Duration) {
	writeProblem(w, status, typ, detail, retryAfter)
	m.decide(r, d)
}

// decide reports d to the observer, if any.
func (m *middleware) decide(r *http.Request, d Decision) {
	if m.cfg.OnDecision != nil {
		m.cfg.OnDecision(r, d)
	}
}

// keyed reports whether method's keys are honoured.
func (m *middleware) keyed(method string) bool {
	if m.cfg.Methods == nil {
		return method == http.MethodPost || method == http.MethodPatch
	}
	for _, x := range m.cfg.Methods {
		if x == method {
			return true
		}
	}
	return false
}

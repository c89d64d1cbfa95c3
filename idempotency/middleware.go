package idempotency

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
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
	// running the handler again would repeat its effect. Zero or negative
	// means 1 MiB.
	MaxResponseBytes int

	// TTL is how long a completed response is kept for replay. Zero or
	// negative means 24 hours.
	TTL time.Duration

	// Lease is how long a key stays reserved while its handler runs. When a
	// handler never finishes (a crashed process, with a shared store) the
	// key is free again after Lease. Set it above the handler's longest
	// run (the server's WriteTimeout): a handler still running when its
	// lease ends lets a repeat run concurrently, and its own response is
	// then not stored. Zero or negative means 1 minute.
	Lease time.Duration

	// RetryAfter is the wait advertised with 409 (a request with the key
	// is in flight) and 503 (the store failed), rounded up to whole
	// seconds. Zero or negative means 1 second.
	RetryAfter time.Duration

	// Scope returns the namespace of a request's key, so that one client
	// can never receive another's stored response. The middleware stores
	// a key under StoreKey(Scope(r), key). Nil means AuthorizationScope.
	Scope func(r *http.Request) string

	// Release decides, from the status the handler wrote, whether to
	// release the key (nothing stored; a retry runs the handler again)
	// rather than store the response. Nil means DefaultRelease: 5xx, 429
	// and 408, the answers that ask the client to try again.
	Release func(status int) bool

	// KeepAborted makes a handler that panicked, or returned without
	// writing anything after its client went away, complete its key as
	// NotReplayable (a repeat gets 410) instead of releasing it. Set it
	// when such a handler may already have had its effect. The zero value
	// releases the key.
	KeepAborted bool

	// OnDecision, when non-nil, is called once per request with a keyed
	// method with what the middleware did, after it did it. Nil costs
	// nothing.
	OnDecision func(r *http.Request, d Decision)

	// Logger receives store failures and lost leases. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultRelease reports whether status asks the client to try again
// (5xx, 429 Too Many Requests, 408 Request Timeout), in which case the
// middleware releases the key instead of storing the response.
func DefaultRelease(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// Middleware returns server middleware that makes requests with an
// idempotency key take effect once. For a request with one of cfg.Methods
// and an Idempotency-Key (or X-Idempotency-Key) header, it:
//
//   - parses the key (see ParseKey; 400 when invalid or repeated);
//   - reads the body, up to cfg.MaxBodyBytes (413 beyond), and hands the
//     handler an identical copy;
//   - fingerprints method, path, query and body, and scopes the key with
//     cfg.Scope (by default, a digest of the Authorization header);
//   - reserves the key in store, for cfg.Lease. If it was free, the handler
//     runs while its response is recorded, and the response is stored for
//     cfg.TTL; if the handler answers a status cfg.Release picks (5xx by
//     default), panics (the panic continues after the release), or gives
//     up on a departed client, the key is released instead;
//   - if the key was taken: a different fingerprint gets 422; a request
//     still in flight gets 409 with Retry-After; a stored response is
//     replayed with "Idempotent-Replayed: true", without calling the
//     handler; a response that could not be stored gets 410;
//   - if the store fails, answers 503 with Retry-After, without running
//     the handler.
//
// The middleware's own answers have application/problem+json bodies
// (RFC 9457) whose types are the Problem constants. A nil store means a new
// MemoryStore with default bounds; a nil handler means http.NotFoundHandler.
func Middleware(store Store, cfg MiddlewareConfig) func(http.Handler) http.Handler {
	if store == nil {
		store = NewMemoryStore(MemoryConfig{})
	}
	cfg = cfg.normalize()
	return func(next http.Handler) http.Handler {
		if next == nil {
			next = http.NotFoundHandler()
		}
		return &middleware{next: next, store: store, cfg: cfg}
	}
}

// normalize returns c with defaults in place of zero values.
func (c MiddlewareConfig) normalize() MiddlewareConfig {
	if c.Methods != nil {
		c.Methods = append(make([]string, 0, len(c.Methods)), c.Methods...)
	}
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
	if c.Release == nil {
		c.Release = DefaultRelease
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// middleware is the handler Middleware returns.
type middleware struct {
	next  http.Handler
	store Store
	cfg   MiddlewareConfig
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

	rec, reserved, err := m.store.Reserve(r.Context(), skey, fp, m.cfg.Lease)
	switch {
	case err != nil:
		m.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "idempotency: reserve failed",
			slog.String("key", key), slog.Any("error", err))
		m.refuse(w, r, DecisionStoreError, http.StatusServiceUnavailable, ProblemUnavailable,
			"the idempotency store is unavailable; the request was not processed", m.cfg.RetryAfter)
	case reserved:
		m.execute(w, r, body, skey, rec.Token)
	case rec.Fingerprint != fp:
		m.refuse(w, r, DecisionKeyReused, http.StatusUnprocessableEntity, ProblemKeyReused,
			"this idempotency key was used for a different request", 0)
	case rec.InFlight():
		m.refuse(w, r, DecisionInFlight, http.StatusConflict, ProblemInFlight,
			"a request with this idempotency key is being processed", m.cfg.RetryAfter)
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

// execution holds what one run of the handler needs, allocated together:
// the handler's copy of the request, its body and the response recorder.
type execution struct {
	req  http.Request
	body bodyReader
	rec  recorder
}

// bodyReader is a restored request body.
type bodyReader struct{ bytes.Reader }

// Close does nothing: the body is in memory.
func (*bodyReader) Close() error { return nil }

// execute runs the handler for a freshly reserved key and then completes or
// releases the reservation.
func (m *middleware) execute(w http.ResponseWriter, r *http.Request, body []byte, skey string, token uint64) {
	x := &execution{req: *r, rec: recorder{w: w, limit: m.cfg.MaxResponseBytes}}
	rec, in := &x.rec, &x.req
	in.Body = http.NoBody
	if len(body) > 0 {
		x.body.Reset(body)
		in.Body = &x.body
	}
	in.ContentLength = int64(len(body))
	// Store operations after the handler must happen even when the client
	// has gone: that is when a retry is most likely.
	ctx := context.WithoutCancel(r.Context())

	returned := false
	defer func() {
		if returned {
			return
		}
		// The handler panicked; the panic continues once this returns.
		if m.cfg.KeepAborted {
			m.complete(ctx, r, skey, token, &Response{Status: http.StatusInternalServerError, NotReplayable: true})
			return
		}
		m.release(ctx, r, skey, token)
	}()
	m.next.ServeHTTP(rec, in)
	returned = true

	resp := rec.response()
	aborted := rec.status == 0 && !rec.hijacked && r.Context().Err() != nil
	switch {
	case aborted && m.cfg.KeepAborted:
		resp = &Response{Status: resp.Status, Header: resp.Header, NotReplayable: true}
		m.complete(ctx, r, skey, token, resp)
	case aborted, m.cfg.Release(resp.Status):
		m.release(ctx, r, skey, token)
	default:
		m.complete(ctx, r, skey, token, resp)
	}
}

// complete stores resp for skey and reports the decision.
func (m *middleware) complete(ctx context.Context, r *http.Request, skey string, token uint64, resp *Response) {
	err := m.store.Complete(ctx, skey, token, resp, m.cfg.TTL)
	if err != nil {
		m.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: response not stored",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		m.decide(r, DecisionLeaseLost)
		return
	}
	m.decide(r, DecisionExecuted)
}

// release frees skey and reports the decision.
func (m *middleware) release(ctx context.Context, r *http.Request, skey string, token uint64) {
	if err := m.store.Release(ctx, skey, token); err != nil && !errors.Is(err, ErrLeaseLost) {
		m.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: release failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	m.decide(r, DecisionReleased)
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

package idempotency

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"unsafe"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/keymark"
)

// ErrNilRequest is returned by Transport.RoundTrip for a nil request.
var ErrNilRequest = errors.New("idempotency: nil request")

// ErrNoNext is returned, without sending anything, by every request
// through a Transport that was not made by NewTransport (the zero value).
var ErrNoNext = errors.New("idempotency: Transport has nothing to send through: create it with idempotency.NewTransport")

// Config configures the client link. The zero value adds an
// Idempotency-Key holding a fresh UUIDv4 to every POST and PATCH that has
// no key, without declaring that the server honours it (see KeysHonored);
// NewTransport normalises it and never modifies the caller's copy.
type Config struct {
	// Methods are the request methods that get a key. Nil means POST and
	// PATCH; an empty non-nil slice means that no method does. Methods are
	// matched exactly, as net/http sends them (upper case).
	Methods []string

	// Header is the name of the header the link sets. The empty string
	// means Idempotency-Key. Beware that the retry loop (classify) and
	// net/http only treat Idempotency-Key and X-Idempotency-Key as making
	// a request safe to repeat: under another name even a caller's key or
	// a host that honours keys does not license a retry.
	Header string

	// NewKey makes the key of one call. Nil means NewKeyV4; NewKeyV7 gives
	// time-ordered keys, which index better. It must be safe for
	// concurrent use and return a valid header value.
	NewKey func() string

	// Skip, when non-nil, is asked about every request that would get a
	// generated key; true sends it without one (for a server that rejects
	// unknown headers, or logs that should not carry them). Keys given with
	// WithKey are added regardless. Nil skips nothing.
	Skip func(req *http.Request) bool

	// Disable turns generated keys off entirely; keys given with WithKey
	// are still added. The zero value generates keys.
	Disable bool

	// KeysHonored declares that the server deduplicates by key: it runs
	// the first request with a key and answers a repeat from its record
	// (as Middleware does). Only then does a generated key make an
	// ambiguous failure (a reset or EOF after the request was written, a
	// 5xx, a 409 "in flight") safe to retry. The zero value declares
	// nothing: the generated key still goes out, but neither the retry
	// loop nor net/http treats the request as keyed, so a POST is repeated
	// only when it provably was not sent or was answered 429 (see
	// Transport). Keys the caller sets, in the header or with WithKey, are
	// the caller's own declaration and license retries regardless.
	KeysHonored bool

	// OnKey, when non-nil, is called with the outgoing request (the link's
	// copy) and its key every time the link adds a key, for logging. It
	// must not modify the request. Read the key from the argument:
	// req.Header.Get does not find a generated key that licenses nothing
	// (see Transport). Nil costs nothing.
	OnKey func(req *http.Request, key string)
}

// Transport is the client link: an http.RoundTripper that adds an
// idempotency key to requests that need one and passes every request on to
// Next. Place it outside the retry loop, so that the key is made once per
// call and every attempt carries it:
//
//	rt := idempotency.NewTransport(transport.New(base, transport.Config{}), idempotency.Config{})
//
// A request gets a key when its method is in Config.Methods and it carries
// neither Idempotency-Key nor X-Idempotency-Key (nor Config.Header): the
// key given with WithKey if its context has one, else a fresh one from
// Config.NewKey (unless Disable or Skip says no). A caller's key is never
// overwritten. The caller reads the key used from the response's request
// (see ResponseKey).
//
// Who vouches for the key decides whether it licenses a retry. A key the
// caller set, or given with WithKey, and a generated key toward a host
// declared with Config.KeysHonored, go out under the canonical header
// name, which the retry loop (classify.Idempotent) and net/http (its
// replay of a request on a broken reused connection) both read as "safe
// to repeat". Any other generated key goes out under the lower-case name
// ("idempotency-key"): header names are case-insensitive, so a server
// reads it as usual (HTTP/1.1 writes the name as given, HTTP/2 always in
// lower case), but the header map lookups of classify and of net/http's
// replay rule do not see it, and the request is retried only as a keyless
// one would be. Inner links that look for the key should use ResponseKey's
// rule, not Header.Get. A generated key is also marked in the context of
// the request passed on, so that a retry it licenses is reported as
// transport.WhyGeneratedKey, not transport.WhyCallerKey.
//
// The caller's request is never modified: a keyed request is a shallow copy
// with a copy of the header map (the header values are shared, capped so
// an append cannot write into the caller's arrays). On a POST with up to
// seven headers a generated key costs three allocations: the request (with
// the key's bytes, its one-element value slice and its mark inside it) and
// the map (two, in Go's map layout). A key from Config.NewKey or WithKey
// adds its own.
//
// A Transport is safe for concurrent use. Create one with NewTransport; the
// zero value fails every request, unsent, with ErrNoNext.
type Transport struct {
	next      http.RoundTripper
	methods   []string      // nil: POST and PATCH
	header    string        // canonical: a caller's key, or a generated one toward a host that honours keys
	generated string        // the map key of a generated key: header, or its lower-case form when that licenses nothing
	newKey    func() string // nil: NewKeyV4, generated in place
	skip      func(*http.Request) bool
	disable   bool
	onKey     func(*http.Request, string)
}

// NewTransport returns a client link that sends requests through next,
// configured by cfg (zero fields take the defaults). A nil next means a
// pooled transport from go-cleanhttp, created here and owned by this
// Transport.
func NewTransport(next http.RoundTripper, cfg Config) *Transport {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	t := &Transport{
		next:    next,
		methods: cfg.Methods,
		header:  http.CanonicalHeaderKey(cfg.Header),
		newKey:  cfg.NewKey,
		skip:    cfg.Skip,
		disable: cfg.Disable,
		onKey:   cfg.OnKey,
	}
	if cfg.Methods != nil {
		t.methods = append(make([]string, 0, len(cfg.Methods)), cfg.Methods...)
	}
	if t.header == "" {
		t.header = HeaderKey
	}
	t.generated = t.header
	if !cfg.KeysHonored {
		t.generated = unlicensed(t.header)
	}
	return t
}

// Lower-case forms of the header names that license a retry. A header map
// entry under them goes on the wire but licenses nothing.
const (
	lowerKey  = "idempotency-key"
	lowerXKey = "x-idempotency-key"
)

// unlicensed returns the map key under which a generated key named name
// licenses no retry: its lower-case form for the two names that classify
// and net/http read as a license, name itself for any other.
func unlicensed(name string) string {
	switch name {
	case HeaderKey:
		return lowerKey
	case HeaderXKey:
		return lowerXKey
	}
	return name
}

// Next returns the RoundTripper that requests are sent through.
func (t *Transport) Next() http.RoundTripper { return t.next }

// CloseIdleConnections closes the idle connections of Next, when it has
// that method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip adds a key to req when it needs one (see Transport) and sends
// it through Next. It returns a response or an error, never both: when
// Next returns both, the response's body is closed and the error returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil {
		return nil, ErrNilRequest
	}
	if t.next == nil {
		return nil, ErrNoNext
	}
	return t.send(t.keyed(req))
}

// keyed returns req, or a copy of it with a key when it needs one.
func (t *Transport) keyed(req *http.Request) *http.Request {
	if !t.wants(req.Method) || t.hasKey(req.Header) {
		return req
	}
	name := t.header
	key, ok := KeyFromContext(req.Context())
	if !ok {
		if t.disable || t.skip != nil && t.skip(req) || withoutKey(req.Context()) {
			return req
		}
		name = t.generated
		if t.newKey == nil {
			out, key := withNewKey(req, name)
			if t.onKey != nil {
				t.onKey(out, key)
			}
			return out
		}
		key = t.newKey()
	}
	out := withHeader(req, name, key, !ok)
	if t.onKey != nil {
		t.onKey(out, key)
	}
	return out
}

// send sends req through Next, dropping (and closing) a response that
// comes with an error.
func (t *Transport) send(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil && resp != nil {
		if resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	return resp, err
}

// wants reports whether method gets a key.
func (t *Transport) wants(method string) bool {
	if t.methods == nil {
		return method == http.MethodPost || method == http.MethodPatch
	}
	for _, m := range t.methods {
		if m == method {
			return true
		}
	}
	return false
}

// hasKey reports whether h already carries a key under any name the link
// honours, canonical or lower-case (a request that went through a link
// already), so that a request never carries two.
func (t *Transport) hasKey(h http.Header) bool {
	if h == nil {
		return false
	}
	if classify.HasIdempotencyKey(h) {
		return true
	}
	if _, ok := h[lowerKey]; ok {
		return true
	}
	if _, ok := h[lowerXKey]; ok {
		return true
	}
	if t.header == HeaderKey {
		return false
	}
	_, ok := h[t.header] // a custom name, never lower-cased
	return ok
}

// keyedRequest is a request copy, its key's one-element value slice, for
// a generated key the mark that says so (its context), and, for a key
// generated in place, the key's bytes, allocated together: one allocation
// where the parts would take four.
type keyedRequest struct {
	req  http.Request
	val  [1]string
	mark keymark.Ctx
	buf  [uuidLen]byte
}

// withHeader returns a shallow copy of req whose header map is a copy of
// req's with name set to value. generated marks the key as the link's own
// in the copy's context, so that the retry loop can say that a generated
// key, not the caller, licensed a retry (keymark).
func withHeader(req *http.Request, name, value string, generated bool) *http.Request {
	k := new(keyedRequest)
	k.copy(req, value, generated)
	k.val[0] = value
	k.req.Header = headerWith(req.Header, name, k.val[:])
	return &k.req
}

// withNewKey is withHeader of a generated key, a fresh UUIDv4 written into
// the copy's own buffer so that the key costs no allocation of its own. It
// returns the copy and the key.
func withNewKey(req *http.Request, name string) (*http.Request, string) {
	k := new(keyedRequest)
	encodeUUID(&k.buf, newV4())
	// The buffer is never written again, and the string keeps the whole
	// keyedRequest reachable, so the string is as immutable as any other.
	key := unsafe.String(&k.buf[0], len(k.buf))
	k.copy(req, key, true)
	k.val[0] = key
	k.req.Header = headerWith(req.Header, name, k.val[:])
	return &k.req, key
}

// copy makes k's request a shallow copy of req; generated puts the mark of
// key in its context.
func (k *keyedRequest) copy(req *http.Request, key string, generated bool) {
	if !generated {
		k.req = *req
		return
	}
	k.mark = keymark.Ctx{Context: req.Context(), Key: key}
	// WithContext is the only way to set a request's context; the copy
	// it makes does not escape, so it costs no allocation.
	k.req = *req.WithContext(&k.mark)
}

// headerWith returns a copy of h with name set to v. Value slices are
// shared with h, capped at their length so that an append by an inner
// link reallocates rather than writing into the caller's array. maps.Clone
// copies a small map's storage in one move, much faster than re-inserting
// every entry; only the (rare) values with spare capacity are reassigned.
func headerWith(h http.Header, name string, v []string) http.Header {
	var out http.Header
	if h == nil {
		out = make(http.Header, 1)
	} else {
		out = maps.Clone(h)
		for n, vs := range out {
			if cap(vs) != len(vs) {
				out[n] = vs[:len(vs):len(vs)]
			}
		}
	}
	out[name] = v
	return out
}

type keyContextKey struct{}

// WithKey returns a copy of ctx that makes the client link use key for a
// request sent with it, instead of generating one. Use it when a call is
// repeated at a higher level than the retry loop (a job re-run after a
// crash, a user pressing "pay" again) and must be recognised by the server
// as the same operation: persist the key with the job and pass it here.
// Setting the header on the request yourself does the same.
//
// The key is added only to requests whose method gets keys (Config.Methods)
// and that carry no key already; it is added even when Disable or Skip
// would turn generation off. An empty key is ignored. The key must be a
// valid header value; ParseKey checks what a server will accept.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyContextKey{}, key)
}

// KeyFromContext returns the key that WithKey put in ctx, and whether there
// is a non-empty one. It is the client side's accessor, for a key on its
// way out; a handler reads the key its request came with by
// RequestKey(r).
func KeyFromContext(ctx context.Context) (string, bool) {
	if ctx == nil {
		return "", false
	}
	key, _ := ctx.Value(keyContextKey{}).(string)
	return key, key != ""
}

// ResponseKey returns the idempotency key that was sent with the request
// that produced resp (its Idempotency-Key, else its X-Idempotency-Key,
// under the canonical or the lower-case map key; see Transport), or ""
// when there was none. Through a rebound chain, resp.Request is the last
// attempt's request, which carries the key the client link added. For a
// custom Config.Header, read the header map under that name and its lower
// case.
func ResponseKey(resp *http.Response) string {
	if resp == nil || resp.Request == nil {
		return ""
	}
	h := resp.Request.Header
	for _, name := range [...]string{HeaderKey, lowerKey, HeaderXKey, lowerXKey} {
		if vs := h[name]; len(vs) > 0 && vs[0] != "" {
			return vs[0]
		}
	}
	return ""
}

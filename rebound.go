// Package rebound makes an http.Client absorb transient failures without
// turning an outage into a retry storm.
//
// NewClient returns a client, and NewTransport wraps any RoundTripper, with
// a chain of small decorators, each its own package and usable alone:
//
//	caller ─► idempotency ─► transport (retry loop) ─► budget ─► breaker ─► base
//	          (key once)     (classify, backoff,       (retries   (per host,  (go-cleanhttp
//	                          Retry-After)              ≤ 20 %)    fail fast)  pooled)
//
// With no options every link uses its defaults (see docs/configuration.md's table).
// A Policy sets every link's configuration at once; WithHostPolicy gives
// hosts their own Policy, matched by exact host name or "*.suffix". New
// builds the same chain and returns an invalid configuration as an error
// instead of failing every request with it; ParsePolicyFile reads
// policies from JSON. Every link names a host in one canonical form
// (lower case, no trailing dot, IDNA A-label, IPv6 in brackets, no default
// port), so every spelling of a host meets the same policy, breaker and
// budget.
package rebound

import (
	"errors"
	"net/http"
	"sort"
	"sync"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// Policy is the configuration of one chain: every link's Config, and
// switches to leave links out. The zero value is the default chain.
type Policy struct {
	// Retry configures the retry loop. The zero value is its defaults.
	Retry transport.Config
	// Breaker configures the per-host circuit breakers. The zero value
	// trips only on statistically clear failure (two sequential tests:
	// false-trip odds below 10⁻⁴ per fresh client over 1,000 calls to a
	// host failing 30 %; a fresh or quiet dead host trips after 10
	// failures); never counts a response with a wait hint; while open,
	// probes once a second (plus up to 10 % jitter), never longer.
	Breaker breaker.Config
	// Budget configures the retry budget. The zero value is one Ratio
	// budget (20 % of first attempts over 10 s, plus 10 retries/s) shared
	// by every host of this policy.
	Budget budget.Config
	// Idempotency configures the key link. The zero value adds a UUIDv4
	// Idempotency-Key to POST and PATCH requests without one. A generated
	// key licenses a retry of the POST only toward hosts declared with
	// KeysHonored; elsewhere the POST is retried only when provably not
	// sent or answered 429, as if it had no key.
	Idempotency idempotency.Config

	// DisableBudget leaves the retry budget out. The zero value keeps it.
	DisableBudget bool
	// DisableBreaker leaves the circuit breaker out. The zero value keeps
	// it.
	DisableBreaker bool
	// DisableIdempotencyKeys stops the chain from generating keys (keys
	// the caller sets, or gives with idempotency.WithKey, still go out).
	// Generated keys are harmless toward hosts that ignore them (they
	// license no retry there), so this is only for servers that reject
	// an unexpected header. The zero value generates keys.
	DisableIdempotencyKeys bool
	// KeysHonored declares that the hosts of this policy deduplicate by
	// Idempotency-Key (idempotency.Config.KeysHonored): only toward them
	// does a key, generated or set by the caller, let the retry loop, and
	// net/http, repeat a POST after an ambiguous failure. The zero value
	// declares nothing: a POST is repeated only when it provably was not
	// sent or was answered 429 (unless TrustCallerKeys).
	KeysHonored bool
	// TrustCallerKeys makes a key the caller set (the Idempotency-Key or
	// X-Idempotency-Key header, idempotency.WithKey, percall.Key) license
	// the repeat of a POST after an ambiguous failure toward the hosts of
	// this policy even though they are not declared KeysHonored: the
	// caller's key is taken as the caller's word that the server
	// deduplicates. The zero value does not: toward a host not declared
	// KeysHonored the caller's key goes out (under the lower-case header
	// name, which servers read alike) but licenses no repeat, so a server
	// that ignores keys never runs a POST twice because of rebound (see
	// docs/post-safety.md).
	TrustCallerKeys bool
}

// Option configures New, NewTransport and NewClient.
type Option func(*options)

type options struct {
	policy   Policy
	hosts    []hostOption // in the order given
	observer Observer     // every WithObserver, joined
	noStats  bool
	edits    []func(pattern string, p *Policy) // EditPolicies, run last
}

// hostOption is one WithHostPolicy, checked by New.
type hostOption struct {
	pattern string
	policy  Policy
}

// WithPolicy sets the policy of every host without a host policy. A later
// WithPolicy replaces an earlier one.
func WithPolicy(p Policy) Option {
	return func(o *options) { o.policy = p }
}

// WithRetry sets the retry loop's configuration of the default policy.
func WithRetry(cfg transport.Config) Option {
	return func(o *options) { o.policy.Retry = cfg }
}

// WithHostPolicy gives the hosts matching pattern their own chain with
// policy p. A pattern is a host name or IP address ("api.example.com",
// "10.0.0.7", "[::1]"), which matches that host on every port, or "*." and
// a host name ("*.example.com"), which matches every subdomain but not
// example.com itself. Either may name a port ("localhost:8080",
// "[::1]:9000", "*.svc.internal:8443"), and then matches that port only,
// the port of a URL without one being its scheme's (443 for https, 80 for
// http): two local services get two policies. Patterns and request hosts
// are compared in canonical form (lower case, no trailing dot, IDNA
// A-label), so "API.example.com." and "api.example.com" are one pattern,
// and "bücher.example" matches a request to "xn--bcher-kva.example".
// An exact pattern with the request's port wins over one without a port,
// an exact pattern over a suffix, a longer suffix over a shorter one, and
// of one suffix the pattern with the request's port.
//
// A pattern that is not a host (a scheme, path, bad port or other wildcard)
// or names the same hosts as another pattern is an error that New returns
// (NewTransport's chain then fails every request with it).
func WithHostPolicy(pattern string, p Policy) Option {
	return func(o *options) { o.hosts = append(o.hosts, hostOption{pattern, p}) }
}

// WithObserver reports every decision of the chain to obs. Given more
// than once, it reports to every observer, in the order given.
func WithObserver(obs Observer) Option {
	return func(o *options) { o.observer = o.observer.join(obs) }
}

// Transport is the rebound chain returned by NewTransport: an
// http.RoundTripper that also exposes the state of its links for metrics.
// It is safe for concurrent use. The zero value (&rebound.Transport{}) is
// the default chain over go-cleanhttp's pooled transport, as
// NewTransport(nil) returns it, built on its first use.
type Transport struct {
	once   sync.Once         // builds the zero value's chain; done in New
	rt     http.RoundTripper // the default chain, the router, or failing
	base   http.RoundTripper
	def    *chain
	router *router     // nil without host policies
	stats  *statsTable // nil with WithoutStats
}

// chain is one policy's assembled links.
type chain struct {
	pattern string // "" for the default policy
	policy  Policy // as given
	rt      http.RoundTripper
	breaker *breaker.Transport // nil when disabled
	budget  *budget.Transport  // nil when disabled
}

// New wraps base in the rebound chain configured by opts, or returns the
// errors of an invalid configuration (a bad or duplicate host pattern, an
// impossible setting), each a *ConfigError, joined. A nil base means a
// pooled transport from go-cleanhttp, shared by every chain of this
// transport.
//
//	rt, err := rebound.New(nil, rebound.WithHostPolicy("api.example.com", p))
//	if err != nil {
//		return err // rebound: WithHostPolicy("api.example.com"): ...
//	}
//	client := &http.Client{Transport: rt}
func New(base http.RoundTripper, opts ...Option) (*Transport, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	o.applyEdits()
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	errs := checkPolicy("WithPolicy", "", o.policy)
	routes, routeErrs := compilePatterns(o.hosts)
	errs = append(errs, routeErrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t := &Transport{base: base}
	t.once.Do(func() {})
	if !o.noStats {
		t.stats = newStatsTable()
	}
	t.def = build(base, "", o.policy, o.observer, t.stats)
	t.rt = t.def.rt
	if len(routes) == 0 {
		return t, nil
	}
	r := &router{exact: make(map[string]*chain), fallback: t.def}
	for _, rt := range routes {
		r.add(rt, build(base, rt.pattern, rt.policy, o.observer, t.stats))
	}
	// Longest first, and of one suffix the pattern with a port first;
	// patterns are distinct, so no two suffixes of one length and port
	// can match one host.
	sort.SliceStable(r.suffixes, func(i, j int) bool {
		a, b := r.suffixes[i], r.suffixes[j]
		if len(a.dotSuffix) != len(b.dotSuffix) {
			return len(a.dotSuffix) > len(b.dotSuffix)
		}
		return a.port != "" && b.port == ""
	})
	t.router, t.rt = r, r
	return t, nil
}

// NewTransport is New for a configuration known to be valid, such as one
// written in the code: it returns the chain without an error. An invalid
// configuration makes that chain fail every request, before anything is
// sent, with the error New would have returned; use New (or
// ParsePolicyFile, for configuration read at run time) to learn of it
// before the first request.
//
//	client := &http.Client{Transport: rebound.NewTransport(nil)}
//	// or, keeping an existing client's transport (proxy, TLS, timeouts):
//	client.Transport = rebound.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	t, err := New(base, opts...)
	if err != nil {
		if base == nil {
			base = cleanhttp.DefaultPooledTransport()
		}
		f := &Transport{rt: failing{err}, base: base, def: &chain{}}
		f.once.Do(func() {})
		return f
	}
	return t
}

// init makes the zero value the default chain, once; a Transport from New
// has it done already, so this is one atomic load.
func (t *Transport) init() {
	t.once.Do(func() {
		d, err := New(nil)
		if err != nil { // no options: cannot happen, but never a nil chain
			t.rt, t.base, t.def = failing{err}, cleanhttp.DefaultPooledTransport(), &chain{}
			return
		}
		t.rt, t.base, t.def, t.router, t.stats = d.rt, d.base, d.def, d.router, d.stats
	})
}

// PolicyFor returns the policy that applies to host (a host name, with or
// without a port, in any of the spellings a URL allows) and the pattern
// that chose it, "" for the default policy: the answer RoundTrip acts on,
// for debugging configuration. A host without a port matches only the
// patterns without one (a request's URL has a scheme, and so a port).
//
// p holds the values in effect: each link's default in place of a zero
// or out-of-range field (MaxAttempts 4, BaseDelay 100ms, the breaker's
// and the budget's figures, a Hedge's delays ...), as the chain uses
// them. Hooks and observers are as given.
func (t *Transport) PolicyFor(host string) (pattern string, p Policy) {
	t.init()
	c := t.def
	if t.router != nil {
		c = t.router.routeHost(hostname.Name(host), splitPort(host))
	}
	return c.pattern, effective(c.policy)
}

// RoundTrip sends req through the chain of its host's policy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.init()
	return t.rt.RoundTrip(req)
}

// CloseIdleConnections closes the base transport's idle connections, when
// it has that method.
func (t *Transport) CloseIdleConnections() {
	t.init()
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Breakers returns a snapshot of every tracked host's circuit breaker, of
// every policy, for metrics: state, counts, trips and time until the next
// probe. Each Host is the canonical URL host ("api.example.com",
// "127.0.0.1:8080"), the form RetryBalance and PolicyFor take. It is empty
// when breakers are disabled.
func (t *Transport) Breakers() []breaker.HostState {
	var out []breaker.HostState
	for _, c := range t.chains() {
		if c.breaker != nil {
			out = append(out, c.breaker.Snapshot()...)
		}
	}
	return out
}

// RetryBalance returns how many retries the budget serving host would
// allow now, for metrics; see budget.Transport.Balance. host is a URL host
// in the form Breakers reports it ("api.example.com", "127.0.0.1:8080":
// without the scheme's default port); other spellings of case, trailing
// dot and Unicode are folded. ok is false when that host's policy has no
// budget.
func (t *Transport) RetryBalance(host string) (balance float64, ok bool) {
	t.init()
	c := t.def
	if t.router != nil {
		c = t.router.routeHost(hostname.Name(host), splitPort(host))
	}
	if c.budget == nil {
		return 0, false
	}
	return c.budget.Balance(host), true
}

// chains returns the default chain and every host policy's chain.
func (t *Transport) chains() []*chain {
	t.init()
	cs := []*chain{t.def}
	if t.router != nil {
		for _, c := range t.router.exact {
			cs = append(cs, c)
		}
		for _, ports := range t.router.exactPort {
			for _, c := range ports {
				cs = append(cs, c)
			}
		}
		for _, s := range t.router.suffixes {
			cs = append(cs, s.chain)
		}
	}
	return cs
}

// NewClient returns an http.Client whose Transport is NewTransport(nil,
// opts...). It sets no overall timeout: bound each call with its request's
// context.
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(nil, opts...)}
}

// build assembles one policy's chain, innermost first, reporting to obs
// and counting in stats (when not nil).
func build(base http.RoundTripper, pattern string, p Policy, obs Observer, stats *statsTable) *chain {
	c := &chain{pattern: pattern, policy: p}
	rt := base
	if !p.DisableBreaker {
		cfg := p.Breaker
		cfg.OnStateChange = both(cfg.OnStateChange, obs.Breaker)
		if stats != nil {
			cfg.OnStateChange = both(stats.breakerChange, cfg.OnStateChange)
		}
		c.breaker = breaker.NewTransport(rt, cfg)
		rt = c.breaker
	}
	if !p.DisableBudget {
		cfg := p.Budget
		cfg.OnRefuse = both(cfg.OnRefuse, obs.Budget)
		c.budget = budget.NewTransport(rt, cfg)
		rt = c.budget
	}
	retry := p.Retry
	if obs.Retry != nil {
		retry.Observer = joinObservers(retry.Observer, transport.ObserverFunc(obs.Retry))
	}
	if stats != nil {
		retry.Observer = stats.observer(retry.Observer)
	}
	rt = transport.New(rt, retry)
	keys := p.Idempotency
	if p.DisableIdempotencyKeys {
		keys.Disable = true
	}
	keys.KeysHonored = keys.KeysHonored || p.KeysHonored
	if !keys.KeysHonored && !p.TrustCallerKeys {
		rt = callerKeys{next: rt}
	}
	if stats != nil {
		keys.OnKey = both2(stats.key, keys.OnKey)
	}
	c.rt = idempotency.NewTransport(rt, keys)
	return c
}

// failing is the chain of an invalid configuration: every request fails
// with the configuration error, before anything is sent.
type failing struct{ err error }

func (f failing) RoundTrip(req *http.Request) (*http.Response, error) {
	if req != nil && req.Body != nil {
		req.Body.Close()
	}
	return nil, f.err
}

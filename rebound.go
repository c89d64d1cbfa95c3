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
	"sync/atomic"

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
	policy      Policy
	hosts       []hostOption // in the order given
	observer    Observer     // every WithObserver, joined
	hasObserver bool         // WithObserver given (Reload keeps the old ones otherwise)
	noStats     bool
	edits       []func(pattern string, p *Policy) // EditPolicies, run last
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
	return func(o *options) { o.observer, o.hasObserver = o.observer.join(obs), true }
}

// Transport is the rebound chain returned by NewTransport: an
// http.RoundTripper that also exposes the state of its links for metrics.
// It is safe for concurrent use. The zero value (&rebound.Transport{}) is
// the default chain over go-cleanhttp's pooled transport, as
// NewTransport(nil) returns it, built on its first use.
type Transport struct {
	once  sync.Once            // builds the zero value's chain; done in New
	live  atomic.Pointer[live] // the configuration in force; see Reload
	mu    sync.Mutex           // serialises Reload, Isolate and Reset
	base  http.RoundTripper
	stats *statsTable // nil with WithoutStats
	obs   atomic.Pointer[Observer]
}

// live is one configuration of a Transport, replaced whole by Reload and
// Isolate: calls load it once and finish under it.
type live struct {
	rt     http.RoundTripper // the default chain, the router, or failing
	def    *chain
	router *router               // nil without host policies
	iso    map[string]*isolation // isolated hosts; nil when none
}

// chain is one policy's assembled links.
type chain struct {
	pattern string // "" for the default policy
	policy  Policy // as given
	rt      http.RoundTripper
	breaker *breaker.Transport   // nil when disabled
	budget  *budget.Transport    // nil when disabled
	retry   *transport.Transport // nil in a failing Transport
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
	obs := o.observer
	t.obs.Store(&obs)
	l, _ := t.assemble(o.policy, routes, nil, false)
	t.live.Store(l)
	return t, nil
}

// assemble builds the chains of a configuration: the default policy's
// and one per route, reusing what it can of old's (see Reload). It
// returns the configuration and, for Reload, what happened to each
// chain.
func (t *Transport) assemble(def Policy, routes []route, old *live, newObservers bool) (*live, []chainChange) {
	var changes []chainChange
	var prev map[string]*chain
	if old != nil {
		prev = old.chainsByKey()
	}
	mk := func(key, pattern string, p Policy) *chain {
		c, ch := t.build(pattern, p, prev[key], newObservers)
		if len(ch.reset) > 0 {
			ch.hosts = prev[key].hosts()
		}
		changes = append(changes, ch)
		delete(prev, key)
		return c
	}
	l := &live{def: mk("", "", def)}
	l.rt = l.def.rt
	if len(routes) > 0 {
		r := &router{exact: make(map[string]*chain), fallback: l.def}
		for _, rt := range routes {
			r.add(rt, mk(patternKey(rt.name, rt.port, rt.wildcard), rt.pattern, rt.policy))
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
		l.router, l.rt = r, r
	}
	for _, c := range prev {
		changes = append(changes, chainChange{pattern: c.pattern, removed: true, hosts: c.hosts()})
	}
	if old != nil {
		l.iso = old.iso
	}
	return l, changes
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
		f := &Transport{base: base}
		var o options
		for _, opt := range opts {
			if opt != nil {
				opt(&o)
			}
		}
		if !o.noStats {
			f.stats = newStatsTable() // for when a Reload repairs it
		}
		obs := o.observer
		f.obs.Store(&obs)
		f.live.Store(&live{rt: failing{err}, def: &chain{}})
		f.once.Do(func() {})
		return f
	}
	return t
}

// init returns the configuration in force, making the zero value the
// default chain on its first use; a Transport from New has it already, so
// this is one atomic load.
func (t *Transport) init() *live {
	if l := t.live.Load(); l != nil {
		return l
	}
	t.once.Do(func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.live.Load() != nil {
			return
		}
		t.base = cleanhttp.DefaultPooledTransport()
		t.stats = newStatsTable()
		t.obs.Store(new(Observer))
		l, _ := t.assemble(Policy{}, nil, nil, false)
		t.live.Store(l)
	})
	return t.live.Load()
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
	c := t.init().chainFor(host)
	return c.pattern, effective(c.policy)
}

// RoundTrip sends req through the chain of its host's policy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.init().rt.RoundTrip(req)
}

// CloseIdleConnections closes the base transport's idle connections, when
// it has that method.
func (t *Transport) CloseIdleConnections() {
	t.init()
	t.mu.Lock()
	base := t.base
	t.mu.Unlock()
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
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
	c := t.init().chainFor(host)
	if c.budget == nil {
		return 0, false
	}
	return c.budget.Balance(host), true
}

// chains returns the default chain and every host policy's chain.
func (t *Transport) chains() []*chain { return t.init().chains() }

// chains returns l's default chain and every host policy's chain.
func (l *live) chains() []*chain {
	cs := []*chain{l.def}
	if l.router != nil {
		for _, c := range l.router.exact {
			cs = append(cs, c)
		}
		for _, ports := range l.router.exactPort {
			for _, c := range ports {
				cs = append(cs, c)
			}
		}
		for _, s := range l.router.suffixes {
			cs = append(cs, s.chain)
		}
	}
	return cs
}

// chainFor returns the chain of host (a URL host, any spelling).
func (l *live) chainFor(host string) *chain {
	if l.router != nil {
		return l.router.routeHost(hostname.Name(host), splitPort(host))
	}
	return l.def
}

// NewClient returns an http.Client whose Transport is NewTransport(nil,
// opts...). It sets no overall timeout: bound each call with its request's
// context.
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(nil, opts...)}
}

// build assembles one policy's chain, innermost first, reporting to the
// Transport's observers and counting in its stats (when on). The links
// whose configuration is that of old's (when not nil) are old's, with
// their state; see Reload.
func (t *Transport) build(pattern string, p Policy, old *chain, newObservers bool) (*chain, chainChange) {
	same := old != nil && old.pattern == pattern && old.retry != nil && sameValue(old.policy, p)
	if same && !newObservers {
		return old, chainChange{pattern: pattern, kept: true}
	}
	c := &chain{pattern: pattern, policy: p}
	ch := chainChange{pattern: pattern, added: old == nil, kept: same}
	rt := t.base
	if !p.DisableBreaker {
		if old != nil && old.breaker != nil && sameValue(old.policy.Breaker, p.Breaker) {
			c.breaker = old.breaker
		} else {
			cfg := p.Breaker
			cfg.OnStateChange = both(cfg.OnStateChange, t.breakerChange)
			if t.stats != nil {
				cfg.OnStateChange = both(t.stats.breakerChange, cfg.OnStateChange)
			}
			c.breaker = breaker.NewTransport(rt, cfg)
			if old != nil && old.breaker != nil {
				ch.reset = append(ch.reset, "breaker")
			}
		}
		rt = c.breaker
	}
	if !p.DisableBudget {
		if old != nil && old.budget != nil && sameValue(old.policy.Budget, p.Budget) {
			c.budget = old.budget.WithNext(rt)
		} else {
			cfg := p.Budget
			cfg.OnRefuse = both(cfg.OnRefuse, t.budgetRefusal)
			c.budget = budget.NewTransport(rt, cfg)
			if old != nil && old.budget != nil {
				ch.reset = append(ch.reset, "budget")
			}
		}
		rt = c.budget
	}
	rt = isolationGate{t: t, next: rt}
	retry := p.Retry
	if o := t.obs.Load(); o != nil && o.Retry != nil {
		// Fixed at build: a reload with other observers builds the retry
		// loops again (keeping their state), so a chain without a Retry
		// observer emits no event it need not.
		retry.Observer = joinObservers(retry.Observer, transport.ObserverFunc(o.Retry))
	}
	if t.stats != nil {
		retry.Observer = t.stats.observer(retry.Observer)
	}
	if old != nil && old.retry != nil {
		var kept transport.Kept
		c.retry, kept = old.retry.Reconfigure(rt, retry)
		if !kept.Admission {
			ch.reset = append(ch.reset, "admission")
		}
		if !kept.Latency && (old.policy.Retry.Hedge != nil || old.policy.Retry.LearnedTimeout != nil) {
			ch.reset = append(ch.reset, "latency")
		}
	} else {
		c.retry = transport.New(rt, retry)
	}
	rt = c.retry
	keys := p.Idempotency
	if p.DisableIdempotencyKeys {
		keys.Disable = true
	}
	keys.KeysHonored = keys.KeysHonored || p.KeysHonored
	if !keys.KeysHonored && !p.TrustCallerKeys {
		rt = callerKeys{next: rt}
	}
	if t.stats != nil {
		keys.OnKey = both2(t.stats.key, keys.OnKey)
	}
	c.rt = idempotency.NewTransport(rt, keys)
	return c, ch
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

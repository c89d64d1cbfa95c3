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
// With no options every link uses its defaults (see the README's table).
// A Policy sets every link's configuration at once; WithHostPolicy gives
// hosts their own Policy, matched by exact hostname or "*.suffix".
package rebound

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// Policy is the configuration of one chain: every link's Config, and
// switches to leave links out. The zero value is the default chain.
type Policy struct {
	// Retry configures the retry loop. The zero value is its defaults.
	Retry transport.Config
	// Breaker configures the per-host circuit breakers. The zero value
	// opens on ≥ 50 % failures of ≥ 20 calls in 10 s, or 5 consecutive
	// failures of a quiet host; open 5 s, doubling per repeated trip up to
	// 60 s; one half-open probe.
	Breaker breaker.Config
	// Budget configures the retry budget. The zero value is one Ratio
	// budget (20 % of first attempts over 10 s, plus 10 retries/s) shared
	// by every host of this policy.
	Budget budget.Config
	// Idempotency configures the key link. The zero value adds a UUIDv4
	// Idempotency-Key to POST and PATCH requests without one. Only safe
	// toward servers that honour the header: see DisableIdempotencyKeys.
	Idempotency idempotency.Config

	// DisableBudget leaves the retry budget out. The zero value keeps it.
	DisableBudget bool
	// DisableBreaker leaves the circuit breaker out. The zero value keeps
	// it.
	DisableBreaker bool
	// DisableIdempotencyKeys stops the chain from generating keys (keys
	// the caller sets, or gives with idempotency.WithKey, still go out).
	// Use it for hosts that ignore the header: toward them a generated
	// key would let the retry loop repeat a POST the server may run twice.
	// The zero value generates keys.
	DisableIdempotencyKeys bool
	// KeysHonored declares that the hosts of this policy deduplicate by
	// Idempotency-Key (idempotency.Config.KeysHonored): only toward them
	// does a generated key let the retry loop, and net/http, repeat a POST
	// after an ambiguous failure. The zero value declares nothing: a POST
	// is repeated only when it provably was not sent, was answered 429, or
	// carries a key the caller set.
	KeysHonored bool
}

// Option configures NewClient and NewTransport.
type Option func(*options)

type options struct {
	policy   Policy
	hosts    map[string]Policy
	observer Observer
	err      error
}

// WithPolicy sets the policy of every host without a host policy.
func WithPolicy(p Policy) Option {
	return func(o *options) { o.policy = p }
}

// WithRetry sets the retry loop's configuration of the default policy.
func WithRetry(cfg transport.Config) Option {
	return func(o *options) { o.policy.Retry = cfg }
}

// WithHostPolicy gives the hosts matching pattern their own chain with
// policy p. A pattern is a hostname ("api.example.com", compared without
// the port and case-insensitively) or "*." and a hostname
// ("*.example.com", which matches every subdomain but not example.com
// itself). An exact pattern wins over a suffix; a longer suffix over a
// shorter one. An invalid pattern makes NewTransport's chain fail every
// request with an error naming it.
func WithHostPolicy(pattern string, p Policy) Option {
	return func(o *options) {
		if !validPattern(pattern) {
			o.err = fmt.Errorf("rebound: invalid host pattern %q", pattern)
			return
		}
		if o.hosts == nil {
			o.hosts = make(map[string]Policy)
		}
		o.hosts[pattern] = p
	}
}

// WithObserver reports every decision of the chain to obs.
func WithObserver(obs Observer) Option {
	return func(o *options) { o.observer = obs }
}

// Transport is the rebound chain returned by NewTransport: an
// http.RoundTripper that also exposes the state of its links for metrics.
// It is safe for concurrent use; the zero value is not usable.
type Transport struct {
	rt     http.RoundTripper // the default chain, the router, or failing
	base   http.RoundTripper
	def    *chain
	router *router // nil without host policies
}

// chain is one policy's assembled links.
type chain struct {
	pattern string // "" for the default policy
	rt      http.RoundTripper
	breaker *breaker.Transport // nil when disabled
	budget  *budget.Transport  // nil when disabled
}

// NewTransport wraps base in the rebound chain configured by opts. A nil
// base means a pooled transport from go-cleanhttp, shared by every chain
// of this transport.
//
//	client := &http.Client{Transport: rebound.NewTransport(nil)}
//	// or, keeping an existing client's transport (proxy, TLS, timeouts):
//	client.Transport = rebound.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	if o.err != nil {
		return &Transport{rt: failing{o.err}, base: base, def: &chain{}}
	}
	t := &Transport{base: base, def: build(base, "", o.policy, o.observer)}
	t.rt = t.def.rt
	if len(o.hosts) == 0 {
		return t
	}
	r := &router{exact: make(map[string]*chain), fallback: t.def}
	for pattern, p := range o.hosts {
		c := build(base, pattern, p, o.observer)
		if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
			r.suffixes = append(r.suffixes, suffixRoute{dotSuffix: "." + suffix, chain: c})
		} else {
			r.exact[strings.ToLower(pattern)] = c
		}
	}
	sort.Slice(r.suffixes, func(i, j int) bool { return len(r.suffixes[i].dotSuffix) > len(r.suffixes[j].dotSuffix) })
	t.router, t.rt = r, r
	return t
}

// RoundTrip sends req through the chain of its host's policy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) { return t.rt.RoundTrip(req) }

// CloseIdleConnections closes the base transport's idle connections, when
// it has that method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Breakers returns a snapshot of every tracked host's circuit breaker, of
// every policy, for metrics: state, counts, trips and time until the next
// probe. It is empty when breakers are disabled.
func (t *Transport) Breakers() []breaker.HostState {
	var out []breaker.HostState
	for _, c := range t.chains() {
		if c.breaker != nil {
			out = append(out, c.breaker.Snapshot()...)
		}
	}
	return out
}

// RetryBalance returns how many retries the budget serving host (a
// hostname, with or without a port) would allow now, for metrics; see
// budget.Transport.Balance. ok is false when that host's policy has no
// budget.
func (t *Transport) RetryBalance(host string) (balance float64, ok bool) {
	c := t.def
	if t.router != nil {
		c = t.router.routeHost(hostname(host))
	}
	if c.budget == nil {
		return 0, false
	}
	return c.budget.Balance(host), true
}

// chains returns the default chain and every host policy's chain.
func (t *Transport) chains() []*chain {
	cs := []*chain{t.def}
	if t.router != nil {
		for _, c := range t.router.exact {
			cs = append(cs, c)
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

// build assembles one policy's chain, innermost first.
func build(base http.RoundTripper, pattern string, p Policy, obs Observer) *chain {
	c := &chain{pattern: pattern}
	rt := base
	if !p.DisableBreaker {
		cfg := p.Breaker
		cfg.OnStateChange = both(cfg.OnStateChange, obs.Breaker)
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
	rt = transport.New(rt, retry)
	keys := p.Idempotency
	if p.DisableIdempotencyKeys {
		keys.Disable = true
	}
	keys.KeysHonored = keys.KeysHonored || p.KeysHonored
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

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

// NewTransport wraps base in the rebound chain configured by opts. A nil
// base means a pooled transport from go-cleanhttp, shared by every chain
// of this transport.
//
//	client := &http.Client{Transport: rebound.NewTransport(nil)}
//	// or, keeping an existing client's transport (proxy, TLS, timeouts):
//	client.Transport = rebound.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) http.RoundTripper {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.err != nil {
		return failing{o.err}
	}
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	def := build(base, o.policy, o.observer)
	if len(o.hosts) == 0 {
		return def
	}
	r := &router{exact: make(map[string]http.RoundTripper), fallback: def, closers: []http.RoundTripper{base}}
	for pattern, p := range o.hosts {
		chain := build(base, p, o.observer)
		if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
			r.suffixes = append(r.suffixes, suffixRoute{dotSuffix: "." + suffix, rt: chain})
		} else {
			r.exact[strings.ToLower(pattern)] = chain
		}
	}
	sort.Slice(r.suffixes, func(i, j int) bool { return len(r.suffixes[i].dotSuffix) > len(r.suffixes[j].dotSuffix) })
	return r
}

// NewClient returns an http.Client whose Transport is NewTransport(nil,
// opts...). It sets no overall timeout: bound each call with its request's
// context.
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(nil, opts...)}
}

// build assembles one chain, innermost first.
func build(base http.RoundTripper, p Policy, obs Observer) http.RoundTripper {
	rt := base
	if !p.DisableBreaker {
		cfg := p.Breaker
		cfg.OnStateChange = both(cfg.OnStateChange, obs.Breaker)
		rt = breaker.NewTransport(rt, cfg)
	}
	if !p.DisableBudget {
		cfg := p.Budget
		cfg.OnRefuse = both(cfg.OnRefuse, obs.Budget)
		rt = budget.NewTransport(rt, cfg)
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
	return idempotency.NewTransport(rt, keys)
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

package budget

import (
	"net/http"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/clock"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// Config configures a Transport. The zero value is the default of every
// field: one Ratio budget with the default RatioConfig shared by all hosts,
// no throttling, no hook.
type Config struct {
	// Ratio configures the default budget, a Ratio, when NewBudget is nil.
	// The zero value is the default: retries up to 20% of the first
	// attempts of the last 10 s, plus 10 retries per second.
	Ratio RatioConfig
	// NewBudget, when non-nil, makes the budget: once, or once per host
	// with PerHost. It may return a shared Budget. Nil, or a nil result,
	// means NewRatio(Ratio).
	NewBudget func() Budget
	// PerHost gives every host (canonical URL host and port, see
	// Refusal.Host) its own budget, so one
	// failing host cannot spend the retries of the others. The zero value
	// shares one budget among all hosts.
	PerHost bool
	// MaxHosts bounds the hosts that per-host budgets and throttling keep
	// state for. When it is reached, hosts idle for longer than the
	// windows are forgotten, unless their budget holds fewer retries than
	// a new one (a NewBudget that remembers longer than Ratio.Window); if
	// none is, further hosts share one overflow budget and throttle. Zero
	// or negative means 1024.
	MaxHosts int
	// Throttle, when non-nil, turns on adaptive client-side throttling of
	// first attempts, per host, configured by *Throttle (whose zero value
	// is the default: K = 2 over 2 minutes). Nil, the default, means off.
	Throttle *ThrottleConfig
	// OnRefuse, when non-nil, is called for every refused attempt, after
	// the refusal is decided and with no lock held, on the goroutine of
	// the refused RoundTrip. Nil reports nothing.
	OnRefuse func(Refusal)
}

// Transport is the budget gate of a rebound chain, an http.RoundTripper
// placed inside the retry loop (package transport) and outside the circuit
// breaker. For every attempt it reads transport.IsRetry from the request
// context:
//
//   - a first attempt deposits into the budget; with throttling on, it may
//     first be rejected locally with ErrThrottled;
//   - a retry withdraws from the budget, or is refused with ErrExhausted.
//
// A refused attempt is not sent: its body is closed and the error, which
// matches classify.ErrNotSent, tells the retry loop to stop and return the
// previous attempt's real outcome. An attempt that is sent goes to Next
// unchanged, and its response or error comes back unchanged (but never
// both: a response that Next returns with an error is closed); an attempt
// whose context is already over goes to Next uncounted, as Next will not
// send it. With throttling on, the outcome of an attempt that is sent is
// recorded: accepted when classify.ServerHealth calls it Healthy and the
// status is not 429, not recorded at all when Neutral (the caller
// cancelled it).
//
// When Next has a RoundTripAt(*http.Request, time.Time) method, as
// breaker.Transport has, the gate sends through it with the time it read
// for the budget, so the two gates read the clock once per attempt.
//
// Budgets are global by default and per host with Config.PerHost;
// throttling is always per host. A Transport is safe for concurrent use.
// Create one with NewTransport; the zero value has no budget and fails
// every request, unsent, with an error saying so (never a panic).
type Transport struct {
	next     http.RoundTripper
	nextAt   timedRoundTripper // next, when it takes the time this gate read; else nil
	global   Budget            // nil with PerHost
	hosts    *registry         // nil when neither PerHost nor Throttle
	newB     func() Budget
	onRefuse func(Refusal)
}

// NewTransport returns a budget gate in front of next, configured by cfg
// (zero fields take the defaults). A nil next means a pooled transport from
// go-cleanhttp, created here and owned by this Transport.
//
//	gate := budget.NewTransport(nil, budget.Config{PerHost: true})
//	client := &http.Client{Transport: transport.New(gate, transport.Config{})}
func NewTransport(next http.RoundTripper, cfg Config) *Transport {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	t := &Transport{next: next, onRefuse: cfg.OnRefuse}
	t.nextAt, _ = next.(timedRoundTripper)
	ratio, user := cfg.Ratio, cfg.NewBudget
	t.newB = func() Budget {
		if user != nil {
			if b := user(); b != nil {
				return b
			}
		}
		return NewRatio(ratio)
	}
	if !cfg.PerHost {
		t.global = t.newB()
	}
	if cfg.PerHost || cfg.Throttle != nil {
		maxHosts := cfg.MaxHosts
		if maxHosts <= 0 {
			maxHosts = DefaultMaxHosts
		}
		idle := durationOr(cfg.Ratio.Window, DefaultWindow)
		var th ThrottleConfig
		if cfg.Throttle != nil {
			th = *cfg.Throttle
			idle = max(idle, durationOr(th.Window, DefaultThrottleWindow))
		}
		perHost, throttle := cfg.PerHost, cfg.Throttle != nil
		t.hosts = newRegistry(maxHosts, idle, func() *entry {
			e := new(entry)
			if perHost {
				e.budget = t.newB()
			}
			if throttle {
				e.throttle = NewThrottle(th)
			}
			return e
		})
	}
	return t
}

// Next returns the RoundTripper that attempts are sent through.
func (t *Transport) Next() http.RoundTripper { return t.next }

// CloseIdleConnections closes the idle connections of Next, when it has
// that method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip lets req through to Next, or refuses it; see Transport. A nil
// request, or one without a URL, is an error and nothing is sent.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		closeBody(req)
		return nil, errNilRequest
	}
	if t.newB == nil {
		closeBody(req)
		return nil, errZeroTransport
	}
	if req.Context().Err() != nil {
		// Over before it was sent (the caller's deadline passed during
		// the loop's wait): the base will not send it, so it neither pays
		// into the budget nor spends it, and its outcome says nothing of
		// whether the server accepts requests.
		return pass(t.next, req)
	}
	now := clock.Now()
	b := t.global
	var th *Throttle
	if t.hosts != nil {
		e := t.hosts.get(hostname.FromURL(req.URL), now.UnixNano())
		if e.budget != nil {
			b = e.budget
		}
		th = e.throttle
	}
	if transport.IsRetry(req.Context()) {
		if !b.Withdraw(now) {
			return t.refuse(req, now, b, th, ErrExhausted, 0)
		}
	} else {
		if th != nil {
			if ok, p := th.allow(now); !ok {
				return t.refuse(req, now, b, th, ErrThrottled, p)
			}
		}
		b.Deposit(now)
	}
	var (
		resp *http.Response
		err  error
	)
	if t.nextAt != nil {
		resp, err = t.nextAt.RoundTripAt(req, now)
		if resp != nil && err != nil {
			closeResponse(resp)
			resp = nil
		}
	} else {
		resp, err = pass(t.next, req)
	}
	if th != nil {
		// The outcome is counted at the attempt's start: the window's
		// buckets are a tenth of it wide, so a second clock read would
		// rarely change the bucket.
		switch classify.ServerHealth(req, resp, err) {
		case classify.Healthy:
			th.Record(now, resp.StatusCode != http.StatusTooManyRequests)
		case classify.Unhealthy:
			th.Record(now, false)
		}
	}
	return resp, err
}

// timedRoundTripper is an inner link that can take the time the gate
// read at the attempt's start instead of reading the clock itself
// (breaker.Transport's RoundTripAt), so that the chain reads the clock
// once per attempt.
type timedRoundTripper interface {
	RoundTripAt(req *http.Request, now time.Time) (*http.Response, error)
}

// pass sends req to next, never returning both a response and an error:
// http.Client would drop such a response without closing it, so it is
// closed here and the error returned.
func pass(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := next.RoundTrip(req)
	if resp != nil && err != nil {
		closeResponse(resp)
		resp = nil
	}
	return resp, err
}

// closeResponse closes resp's body, if it has one.
func closeResponse(resp *http.Response) {
	if resp.Body != nil {
		resp.Body.Close()
	}
}

// refuse closes req's body, reports the refusal and returns err.
func (t *Transport) refuse(req *http.Request, now time.Time, b Budget, th *Throttle, err error, p float64) (*http.Response, error) {
	closeBody(req)
	if t.onRefuse != nil {
		r := Refusal{Host: hostname.FromURL(req.URL), Throttled: err == ErrThrottled, Err: err, Balance: b.Balance(now), Probability: p}
		if th != nil && !r.Throttled {
			r.Probability = th.Probability(now)
		}
		t.onRefuse(r)
	}
	return nil, err
}

// Balance returns the retries the budget for host holds now (see
// Budget.Balance), for metrics, read on the gate's clock. host is a URL
// host as Refusal.Host reports it (canonical: "api.example.com",
// "127.0.0.1:8080", without the scheme's default port); case, a trailing
// dot and a Unicode name are folded as the gate folds them. Without
// Config.PerHost every host shares one budget and host is ignored. A host
// without an entry of its own (never seen, forgotten, or beyond
// Config.MaxHosts and so sharing the overflow budget) reads as a new
// budget.
func (t *Transport) Balance(host string) float64 {
	now := clock.Now()
	if t.global != nil {
		return t.global.Balance(now)
	}
	if e := t.hosts.lookup(hostname.Canonical(host)); e != nil {
		return e.budget.Balance(now)
	}
	return t.newB().Balance(now)
}

// Probability returns the current throttling probability for host (as for
// Balance), read on the gate's clock: the chance that its next first
// attempt is rejected locally. It is 0 when throttling is off or host was
// never seen.
func (t *Transport) Probability(host string) float64 {
	if t.hosts == nil {
		return 0
	}
	if e := t.hosts.lookup(hostname.Canonical(host)); e != nil && e.throttle != nil {
		return e.throttle.Probability(clock.Now())
	}
	return 0
}

// closeBody closes req's body, as a RoundTripper must even when it sends
// nothing.
func closeBody(req *http.Request) {
	if req != nil && req.Body != nil {
		req.Body.Close()
	}
}

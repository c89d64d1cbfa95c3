package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// The three clients of every scenario. id goes out in the X-Client header,
// so that a server shared by the three can count each one's requests (and
// nginx can rate-limit each one on its own).
const (
	plainID     = "plain"
	reboundID   = "rebound"
	noBreakerID = "nobreaker"
	retryableID = "retryablehttp"
	failsafeID  = "failsafe"
)

// deadlineSlack is how long after its deadline a call may still return
// before it counts as outliving it, on top of twice the machine's delay
// during the scenario: the larger of its lag (the most a 5 ms sleep
// overslept, up to seconds on a loaded 2-core machine under the race
// detector) and the plain client's worst overrun (net/http honours
// deadlines, so that much is the machine's). Twice, because a deadline
// reaches the caller through several goroutine hand-offs (timer, the
// connection's reader, the round trip), each of which can wait that long
// for a core. A chain that ignored a deadline overruns by the length of
// the fault, or until the test ends.
const deadlineSlack = 250 * time.Millisecond

// client is one of the three clients, with the counters the tables show.
// A scenario makes fresh clients, so every count starts at zero.
type client struct {
	id, name string
	http     *http.Client
	base     *http.Transport

	attempts   atomic.Int64             // requests the base transport was asked to send
	attemptsAt atomic.Pointer[timeBins] // the same by instant, when a scenario counts them (countAttempts)
	open       atomic.Int64             // TCP connections dialled and not yet closed

	calls, ok    atomic.Int64
	worstOverrun atomic.Int64 // ns past the deadline, the largest seen
	mark         atomic.Int64 // unix ns from which firstOK is measured; 0 unset
	grace        atomic.Int64 // ns after mark whose successes okInGrace counts
	okInGrace    atomic.Int64 // successes ending in [mark, mark+grace)
	firstOK      atomic.Int64 // unix ns of the first success ending after mark

	trips          atomic.Int64 // breaker changes to open (from closed or half-open)
	attemptsAtTrip atomic.Int64 // attempts sent before the first trip; -1 before it
	tripAt         atomic.Int64 // unix ns of the first trip
	attemptsAtMark atomic.Int64 // attempts sent before the mark

	earlyN atomic.Int64 // attempts sent before their own call's wait hint ended

	latFrom, latTo atomic.Int64 // unix ns: latencies of calls ending in [latFrom, latTo) are recorded; latTo 0: all

	mu        sync.Mutex
	failures  map[string]int  // why calls failed, for the log
	firstTrip string          // the reason of the first trip
	early     []time.Duration // per early attempt (the first 1,000), how long before its call's hint ended it went out
	latency   []time.Duration // per call recorded (see call), how long it took
	// unrefused is latency for the calls none of whose attempts the server
	// asked to wait: what a chain that never paces or queues a call the
	// server did not refuse adds to a call.
	unrefused []time.Duration
}

// observer counts the breaker's trips.
func (c *client) observer() rebound.Observer {
	return rebound.Observer{Breaker: func(sc breaker.StateChange) {
		if sc.To != breaker.Open {
			return
		}
		if c.trips.Add(1) == 1 {
			c.attemptsAtTrip.Store(c.attempts.Load())
			c.tripAt.Store(time.Now().UnixNano())
			c.mu.Lock()
			c.firstTrip = sc.From.String() + " → open: " + sc.Reason
			c.mu.Unlock()
		}
	}}
}

// newClients returns the plain client, the default chain and the chain
// without breaker, each over its own pooled go-cleanhttp transport whose
// connections are counted.
func newClients(t *testing.T) []*client {
	t.Helper()
	cs := []*client{
		newClient(plainID, "plain", nil),
		newClient(reboundID, "rebound", func(c *client, base http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(base, rebound.WithObserver(c.observer()))
		}),
		newClient(noBreakerID, "rebound without breaker", func(c *client, base http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(base, rebound.WithObserver(c.observer()),
				rebound.WithPolicy(rebound.Policy{DisableBreaker: true}))
		}),
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.base.CloseIdleConnections()
		}
	})
	return cs
}

// newPeerClients returns two peer libraries, each configured as its
// documentation suggests (the set-ups of bench/storm), over the same kind
// of counted transport: go-retryablehttp's NewClient defaults (4 retries,
// backoff 1 s..30 s, Retry-After honoured on 429 and 503) and
// failsafe-go's failsafehttp retry policy defaults (2 retries, no delay
// but Retry-After) around its circuit breaker on errors and 5xx (≥ 50 % of
// ≥ 20 in 10 s, 5 s open, one success closes it).
func newPeerClients(t *testing.T) []*client {
	t.Helper()
	cs := []*client{
		newClient(retryableID, "go-retryablehttp", func(_ *client, base http.RoundTripper) http.RoundTripper {
			c := retryablehttp.NewClient()
			c.HTTPClient.Transport = base
			c.Logger = nil // by default it writes a line per request
			return &retryablehttp.RoundTripper{Client: c}
		}),
		newClient(failsafeID, "failsafe-go", func(_ *client, base http.RoundTripper) http.RoundTripper {
			retry := failsafehttp.NewRetryPolicyBuilder().Build()
			cb := circuitbreaker.NewBuilder[*http.Response]().
				HandleIf(func(r *http.Response, err error) bool { return err != nil || r.StatusCode >= 500 }).
				WithFailureRateThreshold(0.5, 20, 10*time.Second).
				WithDelay(5 * time.Second).
				WithSuccessThreshold(1).
				Build()
			return failsafehttp.NewRoundTripper(base, retry, cb)
		}),
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.base.CloseIdleConnections()
		}
	})
	return cs
}

func newClient(id, name string, wrap func(*client, http.RoundTripper) http.RoundTripper) *client {
	c := &client{id: id, name: name, failures: make(map[string]int)}
	c.attemptsAtTrip.Store(-1)
	c.base = cleanhttp.DefaultPooledTransport()
	dial := c.base.DialContext
	c.base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.open.Add(1)
		return &countedConn{Conn: conn, open: &c.open}, nil
	}
	var rt http.RoundTripper = attemptCounter{c}
	if wrap != nil {
		rt = wrap(c, rt)
	}
	c.http = &http.Client{Transport: rt}
	return c
}

// attemptCounter counts the requests handed to the base transport: every
// attempt that left the chain, sent or not. It also checks each attempt
// against the wait hints earlier attempts of the same call received (see
// callHints): the chain, the retry loop included, sits above it, so every
// attempt of a call (its retries, its hedges) passes through here with the
// call's context.
type attemptCounter struct{ c *client }

func (a attemptCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	c := a.c
	c.attempts.Add(1)
	c.attemptsAt.Load().add(time.Now())
	h, _ := req.Context().Value(callHintsKey{}).(*callHints)
	if h != nil {
		c.checkEarly(h, time.Now())
	}
	resp, err := c.base.RoundTrip(req)
	if err == nil && h != nil {
		h.note(resp, time.Now())
	}
	return resp, err
}

// callHintsKey is the context key of a call's *callHints.
type callHintsKey struct{}

// callHints is one call's record of the wait its server asked for: the
// latest instant a response to one of its attempts asked it to wait
// until. call puts it in the request's context.
//
// The instant is taken when the response reached the base transport,
// before the chain above saw it, so a chain that waits the hint from when
// it got the response never counts as early: an attempt before until is
// one the chain sent before the server's hint ended, whatever the
// machine's delays. Retries are sequential after the response, so no
// race window is needed.
type callHints struct {
	mu    sync.Mutex
	until time.Time
}

// note records the wait resp asks for from now: Retry-After in seconds
// (the suite's servers send only that form), or the draft RateLimit
// header with r=0 and t seconds. The suite reads the headers itself, not
// with package classify: a wrong reading there must not hide here.
func (h *callHints) note(resp *http.Response, now time.Time) {
	secs, ok := retryAfterSeconds(resp.Header.Get("Retry-After"))
	if !ok {
		secs, ok = rateLimitWait(resp.Header.Get("RateLimit"))
	}
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if until := now.Add(time.Duration(secs) * time.Second); until.After(h.until) {
		h.until = until
	}
}

// retryAfterSeconds parses a Retry-After of whole seconds.
func retryAfterSeconds(v string) (int, bool) {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	return secs, err == nil && secs > 0
}

// rateLimitWait reads the draft -11 RateLimit header's first item:
// with r=0 (nothing left) its t is a wait in seconds.
func rateLimitWait(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	item, _, _ := strings.Cut(v, ",")
	r, t := -1, -1
	for _, p := range strings.Split(item, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.Atoi(val)
		if err != nil {
			continue
		}
		switch k {
		case "r":
			r = n
		case "t":
			t = n
		}
	}
	return t, r == 0 && t > 0
}

// checkEarly records an attempt of a call sent before a wait hint the
// call had received ended, with how long before it ended.
func (c *client) checkEarly(h *callHints, now time.Time) {
	h.mu.Lock()
	until := h.until
	h.mu.Unlock()
	if !now.Before(until) {
		return
	}
	c.earlyN.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.early) < 1000 {
		c.early = append(c.early, until.Sub(now))
	}
}

// earlyAttempts counts the attempts sent before their own call's wait
// hint ended, and the largest margin by which one was early.
func (c *client) earlyAttempts() (n int64, worst time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.early {
		worst = max(worst, d)
	}
	return c.earlyN.Load(), worst
}

// countedConn decrements its client's count of open connections once, on
// the first Close.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// load is what every client's workers do in a scenario.
type load struct {
	workers  int           // concurrent callers per client
	duration time.Duration // how long they keep calling, at most
	maxCalls int           // calls per worker, at most
	pace     time.Duration // pause between two calls of a worker
	timeout  time.Duration // each call's deadline
	method   string        // GET, or POST with a unique body per call
	path     string
}

func (l load) String() string {
	return fmt.Sprintf("%d workers per client, %s, %s %s, deadline %s per call, %s between calls",
		l.workers, l.duration, l.method, l.path, l.timeout, l.pace)
}

// drive runs l with every client at once, against target(c) for client
// c, and returns when every worker has stopped: after l.duration, after
// l.maxCalls calls each, or when stop is closed (nil: never). It returns
// the machine's lag meanwhile: the most a 5 ms sleep overslept.
func drive(cs []*client, target func(*client) string, l load, stop <-chan struct{}) (lag time.Duration) {
	done := make(chan struct{})
	timer := time.AfterFunc(l.duration, func() { close(done) })
	defer timer.Stop()
	var wg sync.WaitGroup
	finished := make(chan struct{})
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		for {
			t0 := time.Now()
			select {
			case <-finished:
				return
			case <-time.After(5 * time.Millisecond):
			}
			lag = max(lag, time.Since(t0)-5*time.Millisecond)
		}
	}()
	defer func() { close(finished); <-lagDone }()
	for _, c := range cs {
		url := target(c)
		for w := range l.workers {
			wg.Go(func() {
				for i := range l.maxCalls {
					select {
					case <-done:
						return
					case <-stop:
						return
					default:
					}
					c.call(context.Background(), url, l, fmt.Sprintf("%s-%d-%d", c.id, w, i))
					if l.pace > 0 {
						select {
						case <-done:
							return
						case <-stop:
							return
						case <-time.After(l.pace):
						}
					}
				}
			})
		}
	}
	wg.Wait()
	return lag // set by the sampler, which the deferred function waits for
}

// call makes one call with its own deadline, under parent, reads the
// whole body and records the outcome: a success is a 200 whose body
// arrived whole. A call still running when parent ends (a scenario's end)
// is cut and recorded nowhere. Its latency is recorded when it ends within
// the client's latency window (see setLatencyWindow; any time when none is
// set). It reports whether the call succeeded.
func (c *client) call(parent context.Context, url string, l load, id string) bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(parent, l.timeout)
	defer cancel()
	hints := new(callHints)
	ctx = context.WithValue(ctx, callHintsKey{}, hints)
	var body io.Reader
	if l.method == http.MethodPost {
		body = strings.NewReader(id)
	}
	req, err := http.NewRequestWithContext(ctx, l.method, url, body)
	if err != nil {
		panic(err) // the harness built a bad request
	}
	req.Header.Set("X-Client", c.id)
	failure := ""
	resp, err := c.http.Do(req)
	closeLastResult(err, resp)
	if err != nil {
		failure = reason(err)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			failure = "body: " + reason(err)
		case resp.StatusCode != http.StatusOK:
			failure = fmt.Sprint(resp.StatusCode)
		}
	}
	end := time.Now()
	if parent.Err() != nil {
		return false // cut by the scenario's end
	}
	c.calls.Add(1)
	if over := end.Sub(start) - l.timeout; over > 0 {
		for {
			w := c.worstOverrun.Load()
			if int64(over) <= w || c.worstOverrun.CompareAndSwap(w, int64(over)) {
				break
			}
		}
	}
	if to := c.latTo.Load(); to == 0 || end.UnixNano() >= c.latFrom.Load() && end.UnixNano() < to {
		c.mu.Lock()
		if len(c.latency) < 1_000_000 {
			c.latency = append(c.latency, end.Sub(start))
			hints.mu.Lock()
			if hints.until.IsZero() {
				c.unrefused = append(c.unrefused, end.Sub(start))
			}
			hints.mu.Unlock()
		}
		c.mu.Unlock()
	}
	if failure != "" {
		c.mu.Lock()
		c.failures[failure]++
		c.mu.Unlock()
		return false
	}
	c.ok.Add(1)
	if m := c.mark.Load(); m != 0 && end.UnixNano() >= m {
		c.firstOK.CompareAndSwap(0, end.UnixNano())
		if end.UnixNano() < m+c.grace.Load() {
			c.okInGrace.Add(1)
		}
	}
	return true
}

// closeLastResult closes the body of the last response failsafe-go keeps
// inside its retrypolicy.ExceededError when it is not the response the
// call returned.
func closeLastResult(err error, resp *http.Response) {
	var exceeded retrypolicy.ExceededError
	if errors.As(err, &exceeded) {
		if last, ok := exceeded.LastResult.(*http.Response); ok && last != nil && last != resp {
			io.Copy(io.Discard, last.Body)
			last.Body.Close()
		}
	}
}

// countAttempts makes c count its attempts by their instant from start
// (see attemptsBetween).
func (c *client) countAttempts(start time.Time) { c.attemptsAt.Store(newTimeBins(start)) }

// attemptsBetween returns the attempts sent in [from, to), counted since
// countAttempts.
func (c *client) attemptsBetween(from, to time.Time) int64 {
	return c.attemptsAt.Load().between(from, to)
}

// setLatencyWindow makes c record the latency of the calls that end in
// [from, to) only.
func (c *client) setLatencyWindow(from, to time.Time) {
	c.latFrom.Store(from.UnixNano())
	c.latTo.Store(to.UnixNano())
}

// latencyQuantile returns the q-quantile of the recorded call latencies
// (nearest rank), or -1 if none was recorded.
func (c *client) latencyQuantile(q float64) time.Duration {
	c.mu.Lock()
	ls := slices.Clone(c.latency)
	c.mu.Unlock()
	return quantile(ls, q)
}

// unrefusedQuantile is latencyQuantile over the calls the server never asked
// to wait (see client.unrefused).
func (c *client) unrefusedQuantile(q float64) time.Duration {
	c.mu.Lock()
	ls := slices.Clone(c.unrefused)
	c.mu.Unlock()
	return quantile(ls, q)
}

// quantile returns the q-quantile of ls (which it sorts), -1 for none.
func quantile(ls []time.Duration, q float64) time.Duration {
	if len(ls) == 0 {
		return -1
	}
	slices.Sort(ls)
	i := int(math.Ceil(q*float64(len(ls)))) - 1
	return ls[min(max(i, 0), len(ls)-1)]
}

// reason names a call's error briefly, for the failure log.
func reason(err error) string {
	var exceeded retrypolicy.ExceededError
	switch {
	case errors.As(err, &exceeded):
		return "failsafe-go: retries exceeded"
	case errors.Is(err, circuitbreaker.ErrOpen):
		return "failsafe-go: breaker open"
	case strings.Contains(err.Error(), "giving up after"):
		return "go-retryablehttp: retries exceeded"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, classify.ErrNotSent):
		if l := admission.LimitOf(err); l != admission.LimitNone {
			return "not sent: no turn (" + l.String() + ")"
		}
		return "not sent: " + classify.ErrorReason(err)
	}
	return classify.ErrorReason(err)
}

// markRecovery starts the recovery clock of every client at now; the
// successes of the next grace are counted apart (see checkServed).
func markRecovery(cs []*client, grace time.Duration) time.Time {
	now := time.Now()
	for _, c := range cs {
		c.firstOK.Store(0)
		c.attemptsAtMark.Store(c.attempts.Load())
		c.grace.Store(int64(grace))
		c.mark.Store(now.UnixNano())
	}
	return now
}

// recovered reports whether every client has had a success since the mark.
func recovered(cs []*client) bool {
	for _, c := range cs {
		if c.firstOK.Load() == 0 {
			return false
		}
	}
	return true
}

// recovery is how long after the mark c's first success ended, or -1 if
// it had none.
func (c *client) recovery() time.Duration {
	f := c.firstOK.Load()
	if f == 0 {
		return -1
	}
	return time.Duration(f - c.mark.Load())
}

// okShare is the share of c's calls that succeeded.
func (c *client) okShare() float64 {
	n := c.calls.Load()
	if n == 0 {
		return 0
	}
	return float64(c.ok.Load()) / float64(n)
}

// topFailures lists c's most frequent failure reasons with their counts.
func (c *client) topFailures(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range c.failures {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for i, e := range all {
		if i == n {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// checkConnections fails t if a client still holds a connection once every
// call has ended and idle connections are closed. A dial the transport
// finished in the background after a call gave up can still land in the
// idle pool, so idle connections are closed again while waiting (at most
// 3 s).
func checkConnections(t *testing.T, cs []*client) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for _, c := range cs {
		for {
			c.base.CloseIdleConnections()
			if c.open.Load() == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %d connections still open after every call ended and idle ones were closed", c.name, c.open.Load())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

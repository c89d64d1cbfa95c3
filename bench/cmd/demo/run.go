package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// config is one run's settings; see main's flags.
type config struct {
	scale      float64       // multiplies every phase's length
	rate       float64       // calls per second per strategy, open loop
	postEvery  int           // every postEvery-th call is a keyed POST
	timeout    time.Duration // each call's deadline
	seed       uint64        // the flaky phase's randomness
	dedup      bool          // the server honours Idempotency-Key
	strategies []strategy
}

// maxInFlight bounds the calls of one strategy in flight at once; an
// arrival beyond it is counted as dropped, not sent.
const maxInFlight = 5000

// maxCalls bounds the calls of one strategy in a run, and so the memory
// its records take.
const maxCalls = 1_000_000

// payload is every POST's body.
var payload = []byte(`{"item":"demo","quantity":1,"note":"` + strings.Repeat("x", 200) + `"}`)

// callRec is one call as the caller saw it, by offsets from the start.
type callRec struct {
	start, end time.Duration
	post, ok   bool
	sent       bool // false: dropped by maxInFlight
	// netErr: the call failed neither by a status nor by its deadline
	// (a reset connection, after whatever retries the strategy made).
	netErr bool
}

// result is everything measured for one strategy.
type result struct {
	strat    strategy
	calls    []callRec
	counts   []serverCounts
	arrivals []time.Duration
	dups     []int
	dials    []time.Duration
	unclosed int // responses the library never closed
	dropped  int
	perCall  map[string]int // server attempts per call id
	hinted   int            // calls the server sent a Retry-After
}

// clock gives offsets from a start set once, when traffic begins; before
// that every offset is negative (the first phase).
type clock struct {
	base  time.Time
	start atomic.Int64 // nanoseconds after base
}

func newClock() *clock { c := &clock{base: time.Now()}; c.start.Store(1 << 62); return c }

func (c *clock) since() time.Duration {
	return time.Since(c.base) - time.Duration(c.start.Load())
}

func (c *clock) begin() { c.start.Store(int64(time.Since(c.base))) }

// live is one strategy during the run: its server, client and counters.
type live struct {
	strat   strategy
	srv     *server
	dialer  *countingDialer
	pool    *http.Transport
	jan     *janitor
	client  *http.Client
	calls   []callRec
	started []atomic.Int64 // per phase, calls begun
	done    []atomic.Int64 // per phase, calls ended
	ok      []atomic.Int64 // per phase, calls succeeded
	dropped atomic.Int64
}

// run replays the schedule against every strategy of cfg at once, each
// with its own server, proxy and transport, printing a progress line per
// phase to w. It returns when every call has ended: at most the schedule
// plus one call timeout.
func run(ctx context.Context, cfg config, sched schedule, w io.Writer) ([]*result, error) {
	if cfg.rate <= 0 || cfg.rate > 2000 {
		return nil, fmt.Errorf("demo: rate %v is not in (0, 2000] calls/s", cfg.rate)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("demo: timeout %v must be positive", cfg.timeout)
	}
	if cfg.postEvery < 1 {
		cfg.postEvery = 3
	}
	clk := newClock()
	total := sched.total()
	n := int(cfg.rate * total.Seconds())
	if n > maxCalls {
		return nil, fmt.Errorf("demo: %d calls per strategy (rate × length) is over the limit of %d", n, maxCalls)
	}
	lives := make([]*live, 0, len(cfg.strategies))
	defer func() {
		for _, l := range lives {
			l.pool.CloseIdleConnections()
			l.srv.close()
		}
	}()
	for i, st := range cfg.strategies {
		srv, err := newServer(sched, clk.since, cfg.rate, cfg.seed+uint64(i), cfg.dedup)
		if err != nil {
			return nil, err
		}
		d := &countingDialer{since: clk.since, d: netDialer()}
		pool := cleanhttp.DefaultPooledTransport()
		pool.DialContext = d.DialContext
		jan := newJanitor(pool)
		l := &live{
			strat: st, srv: srv, dialer: d, pool: pool, jan: jan,
			client:  &http.Client{Transport: st.wrap(jan)},
			calls:   make([]callRec, n),
			started: make([]atomic.Int64, len(sched)),
			done:    make([]atomic.Int64, len(sched)),
			ok:      make([]atomic.Int64, len(sched)),
		}
		lives = append(lives, l)
	}

	interval := time.Duration(float64(time.Second) / cfg.rate)
	var calls sync.WaitGroup
	var drivers sync.WaitGroup
	clk.begin()
	for _, l := range lives {
		drivers.Go(func() { l.drive(ctx, clk, sched, cfg, n, interval, &calls) })
	}

	// The conductor: switch the toxics at phase boundaries and report
	// each phase when it ends.
	var errs []error
	for i := range sched {
		if !waitUntil(ctx, clk, sched.start(i)) {
			break
		}
		if i > 0 {
			progress(w, sched, i-1, lives)
		}
		prevResets := i > 0 && sched[i-1].kind == resets
		for _, l := range lives {
			if sched[i].kind == resets && !prevResets {
				errs = append(errs, l.srv.setResets(true))
			} else if sched[i].kind != resets && prevResets {
				errs = append(errs, l.srv.setResets(false))
			}
		}
	}
	if waitUntil(ctx, clk, total) {
		progress(w, sched, len(sched)-1, lives)
	}
	drivers.Wait()
	calls.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(w, "[%6.1fs] every call has ended\n", clk.since().Seconds())

	results := make([]*result, 0, len(lives))
	for _, l := range lives {
		counts, arrivals, dups := l.srv.snapshot()
		perCall, hinted := l.srv.callAttempts()
		results = append(results, &result{
			strat: l.strat, calls: l.calls, counts: counts, arrivals: arrivals,
			dups: dups, dials: l.dialer.dials(), unclosed: l.jan.closeAll(),
			dropped: int(l.dropped.Load()), perCall: perCall, hinted: hinted,
		})
	}
	return results, ctx.Err()
}

// drive makes n calls at a fixed rate, open loop: a call starts at its
// slot whether or not earlier calls have ended.
func (l *live) drive(ctx context.Context, clk *clock, sched schedule, cfg config, n int, interval time.Duration, calls *sync.WaitGroup) {
	var inFlight atomic.Int64
	for i := range n {
		if !waitUntil(ctx, clk, time.Duration(i)*interval) {
			return
		}
		if inFlight.Load() >= maxInFlight {
			l.dropped.Add(1)
			continue
		}
		inFlight.Add(1)
		calls.Go(func() {
			defer inFlight.Add(-1)
			l.call(clk, sched, cfg, i)
		})
	}
}

// call makes call number i and records it.
func (l *live) call(clk *clock, sched schedule, cfg config, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	post := i%cfg.postEvery == cfg.postEvery-1
	id := strconv.Itoa(i)
	method, body := http.MethodGet, io.Reader(nil)
	if post {
		method, body = http.MethodPost, bytes.NewReader(payload)
	}
	start := clk.since()
	p := sched.at(start)
	l.started[p].Add(1)
	req, err := http.NewRequestWithContext(ctx, method, l.srv.url+"/v1/orders/"+id, body)
	if err != nil { // the URL is ours: a failed call, should it ever happen
		l.calls[i] = callRec{start: start, end: clk.since(), post: post, sent: true, netErr: true}
		l.done[p].Add(1)
		return
	}
	req.Header.Set(callHeader, id)
	if post {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "demo-"+id)
	}
	resp, err := l.client.Do(req)
	ok := err == nil && resp.StatusCode == http.StatusOK
	read := closeOutcome(resp, err)
	end := clk.since()
	// A failure that is neither a status nor the deadline: the error of
	// a broken connection, or a 200 whose body did not arrive whole.
	netErr := err != nil && !errors.Is(err, context.DeadlineExceeded) || ok && !read
	ok = ok && read
	l.calls[i] = callRec{start: start, end: end, post: post, ok: ok, sent: true, netErr: netErr}
	l.done[p].Add(1)
	if ok {
		l.ok[p].Add(1)
	}
}

// waitUntil sleeps until offset at; false if ctx ended first.
func waitUntil(ctx context.Context, clk *clock, at time.Duration) bool {
	d := at - clk.since()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progress prints one line for phase i: per strategy, the share of its
// calls ended so far that succeeded, and the server's attempts per second.
func progress(w io.Writer, sched schedule, i int, lives []*live) {
	var b strings.Builder
	fmt.Fprintf(&b, "[%6.1fs] %-9s done:", (sched.start(i) + sched[i].dur).Seconds(), sched[i].name)
	for _, l := range lives {
		done, ok := l.done[i].Load(), l.ok[i].Load()
		c := l.srv.phaseCounts(i)
		pct := "  -"
		if done > 0 {
			pct = fmt.Sprintf("%3.0f", 100*float64(ok)/float64(done))
		}
		fmt.Fprintf(&b, "  %s %s%% ok %4.0f/s", l.strat.name, pct, float64(c.attempts)/sched[i].dur.Seconds())
	}
	fmt.Fprintln(w, b.String())
}

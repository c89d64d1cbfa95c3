package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 19's targets: every client against a live rate limiter, real
// (nginx's limit_req) and written here (a token bucket, a leaky bucket, a
// fixed window announced in RateLimit headers). Each client has a limiter
// (or an nginx bucket) of its own and they all run at once, 20 closed-loop
// workers each, for a few seconds; goodput is counted after a settling
// second, as what the limiter admitted. The targets are printed, not
// asserted: a 2-core machine shared with other builds moves them by tens
// of percent. The assertions are loose bounds that hold on such a machine
// (see checkGoodput), and 0 attempts of a call before its own wait hint,
// which holds on any machine.

// rateLimitGoodput: a rebound chain gets most of a live rate limiter's
// capacity (issue 19). Its bounds are the loose ones of checkGoodput, and
// no wait under the limit (TestRateLimitOpenLoop). Not landed: in the
// runs of docs/backpressure-results.md the default chain fell below the
// loose 60 % in some runs of nginx's burst 0 (49 %), the leaky bucket
// (33 %) and nginx's own 429 (55 %); the failures are logged as known
// until admission holds them (REBOUND_FAULTS_STRICT=1 fails on them).
var rateLimitGoodput = fix{"issue 19: a live rate limiter's capacity used", false}

// The limit every scenario's limiter enforces, per client.
const limitRate = 50

// failPause is the mean of the random wait (uniform in [0, 2·failPause))
// of a closed-loop worker after a failed call, before its next one.
// Without it a client whose calls fail at once (the plain client's 429s,
// an open breaker's refusals) spins through thousands of calls a second
// and takes the machine's two cores from the clients that wait as they
// are asked to, whose timing is what is measured. With it a client still
// offers up to 20 / 50 ms = 400 failing calls a second per 20 workers,
// eight times the limit. It is random so that workers refused together
// do not come back together: in step, they would meet a limiter without
// burst as one request (a fixed 50 ms pause cut the plain client's
// goodput at nginx's burst 0 to about half the limit).
const failPause = 50 * time.Millisecond

// rlScenario is one closed-loop rate-limiter scenario.
type rlScenario struct {
	name     string
	burst    int           // the limiter's burst (0: none); decides the target
	quota    bool          // the limit is announced in RateLimit headers
	settle   time.Duration // not counted: the clients learn the limit
	duration time.Duration // from the start, settle included
	timeout  time.Duration // each call's deadline
}

// target is the goodput issue 19 asks of rebound, as a share of the
// limit.
func (s rlScenario) target() float64 {
	switch {
	case s.quota:
		return 0.95
	case s.burst >= 5:
		return 0.90
	}
	return 0.80
}

// rlRow is one client's numbers in the counted part of a scenario.
type rlRow struct {
	c                 *client
	admitted, refused int64 // attempts the limiter admitted and refused
	goodput           float64
	p50, p99          time.Duration
	early             int64
}

// counts returns what the limiter behind c admitted and refused among
// the requests that reached it in [from, to); a negative refused means it
// does not count refusals (nginx): the client's attempts sent in the span
// that it did not admit are taken instead.
type counts func(c *client, from, to time.Time) (admitted, refused int64)

// runClosedLoop drives every client with 20 closed-loop workers against
// target(c) from start until start+s.duration, and counts from
// start+s.settle: what the limiter admitted and refused by the instant
// each request reached it (so that no snapshot's lateness moves a count
// across a fixed window's edge), the client's attempts by the instant
// they were sent, the latency of the calls that ended in between. Calls
// still running at the end are cut and not counted.
func runClosedLoop(t *testing.T, s rlScenario, start time.Time, cs []*client, target func(*client) string, read counts) ([]rlRow, time.Duration) {
	t.Helper()
	const workers = 20
	l := load{workers: workers, duration: s.duration, timeout: s.timeout, method: http.MethodGet}
	from, to := start.Add(s.settle), start.Add(s.duration)
	for _, c := range cs {
		c.setLatencyWindow(from, to)
		c.countAttempts(start)
	}
	// The end cancels the calls still running; it is not a deadline, which
	// the chains would see and act on (refusing, near the end, calls whose
	// turn comes after it).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := time.AfterFunc(time.Until(to), cancel)
	defer stop.Stop()
	stopLag := sampleLag()
	var wg sync.WaitGroup
	for _, c := range cs {
		url := target(c)
		for w := range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					if c.call(ctx, url, l, fmt.Sprintf("%s-%d-%d", c.id, w, i)) {
						continue
					}
					select { // see failPause
					case <-ctx.Done():
					case <-time.After(rand.N(2 * failPause)):
					}
				}
			})
		}
	}
	wg.Wait()
	lag := stopLag()
	secs := (s.duration - s.settle).Seconds()
	rows := make([]rlRow, len(cs))
	for i, c := range cs {
		early, _ := c.earlyAttempts()
		admitted, refused := read(c, from, to)
		if refused < 0 {
			refused = c.attemptsBetween(from, to) - admitted
		}
		rows[i] = rlRow{
			c:        c,
			admitted: admitted,
			refused:  max(refused, 0),
			goodput:  float64(admitted) / secs,
			p50:      c.latencyQuantile(0.50),
			p99:      c.latencyQuantile(0.99),
			early:    early,
		}
	}
	return rows, lag
}

// sampleLag measures the machine's lag until the returned function is
// called, which returns it: the most a 5 ms sleep overslept.
func sampleLag() func() time.Duration {
	var lag time.Duration
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			t0 := time.Now()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			lag = max(lag, time.Since(t0)-5*time.Millisecond)
		}
	}()
	return func() time.Duration { close(done); <-finished; return lag }
}

// report logs a scenario's table and the targets, and asserts the loose
// bounds: rebound's default chain gets at least 60 % of the limit and
// 0.75 of the plain client's goodput, and no rebound chain sends an
// attempt of a call before that call's own wait hint ended.
func (s rlScenario) report(t *testing.T, rows []rlRow, lag time.Duration) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n  limit %d/s per client; 20 closed-loop workers per client, %s counted after %s, deadline %s per call; machine lag up to %s\n",
		s.name, limitRate, s.duration-s.settle, s.settle, s.timeout, lag.Round(time.Millisecond))
	fmt.Fprintf(&b, "  %-24s %9s %8s %10s %9s %9s %9s %7s %6s %6s\n", "client", "goodput/s", "of limit", "attempts/s", "refused", "p50", "p99", "ok %", "early", "trips")
	secs := (s.duration - s.settle).Seconds()
	plain := rows[0]
	for _, r := range rows {
		att := r.admitted + r.refused
		refused := 0.0
		if att > 0 {
			refused = float64(r.refused) / float64(att)
		}
		fmt.Fprintf(&b, "  %-24s %9.1f %7.0f%% %10.1f %8.1f%% %9s %9s %7.1f %6d %6d\n", r.c.name, r.goodput, 100*r.goodput/limitRate,
			float64(att)/secs, 100*refused, fmtLatency(r.p50), fmtLatency(r.p99), 100*r.c.okShare(), r.early, r.c.trips.Load())
		record(t, result{Scenario: s.name, Client: r.c.name, Lag: ms(lag), Goodput: r.goodput, OfLimit: r.goodput / limitRate,
			Attempts: float64(att) / secs, Refused: refused, P50: ms(r.p50), P99: ms(r.p99), OK: r.c.okShare(), Early: r.early,
			Target: s.target(), Quota: s.quota})
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %s failures: %s\n", r.c.name, r.c.topFailures(3))
	}
	fmt.Fprintf(&b, "  targets (issue 19) for rebound: goodput ≥ %.0f %% of the limit", 100*s.target())
	if s.quota {
		b.WriteString(" with ≤ 1 % of attempts refused")
	}
	b.WriteString(", ≥ 90 % of plain's, 0 early attempts per call\n")
	for _, r := range rows {
		if !isRebound(r.c) {
			continue
		}
		att := r.admitted + r.refused
		refused := 0.0
		if att > 0 {
			refused = float64(r.refused) / float64(att)
		}
		met := r.goodput >= s.target()*limitRate && (!s.quota || refused <= 0.01)
		ofPlain := math.Inf(1)
		if plain.goodput > 0 {
			ofPlain = r.goodput / plain.goodput
		}
		fmt.Fprintf(&b, "    %-24s %s of the limit (%s), %.0f %% of plain's goodput (%s), %d early\n", r.c.name,
			pct(r.goodput/limitRate), metWord(met), 100*ofPlain, metWord(ofPlain >= 0.9), r.early)
	}
	t.Log(b.String())
	for _, r := range rows {
		if isRebound(r.c) {
			expect(t, always, r.early == 0, "%s: %d attempts went before their own call's wait hint ended", r.c.name, r.early)
		}
	}
	checkGoodput(t, rows[0], rows[1])
}

// checkGoodput asserts the loose bounds on the default chain's goodput:
// at least 60 % of the limit, and at least 0.75 of the plain client's
// (which sends as fast as its workers can and so gets nearly all of it)
// less three standard deviations of two Poisson counts.
func checkGoodput(t *testing.T, plain, def rlRow) {
	t.Helper()
	expect(t, rateLimitGoodput, def.goodput >= 0.6*limitRate, "%s: goodput %.1f/s, want at least 60 %% of %d/s", def.c.name, def.goodput, limitRate)
	want := 0.75*float64(plain.admitted) - 3*math.Sqrt(float64(plain.admitted+def.admitted))
	expect(t, rateLimitGoodput, float64(def.admitted) >= want, "%s: the limiter admitted %d of its attempts, %d of the plain client's (at least %.0f wanted: 0.75 of it less 3 standard deviations)",
		def.c.name, def.admitted, plain.admitted, want)
}

// result is one row of a scenario's table, as written to the file named by
// REBOUND_FAULTS_RESULTS (one JSON object a line, appended) for
// cmd/rlresults, which makes docs/backpressure-results.md's tables.
type result struct {
	Scenario     string  `json:"scenario"`
	Client       string  `json:"client"`
	Lag          float64 `json:"lag_ms"`   // the machine's lag during the scenario
	Goodput      float64 `json:"goodput"`  // admitted per second (closed loop)
	OfLimit      float64 `json:"of_limit"` // goodput / limit
	Attempts     float64 `json:"attempts"` // attempts per second (closed loop), or calls (open loop)
	Refused      float64 `json:"refused"`  // share of attempts refused
	P50          float64 `json:"p50_ms"`
	P99          float64 `json:"p99_ms"`
	P99Unrefused float64 `json:"p99_unrefused_ms,omitempty"` // open loop: p99 of the calls the server never refused
	OK           float64 `json:"ok"`                         // share of calls that succeeded
	Early        int64   `json:"early"`
	Target       float64 `json:"target,omitempty"` // issue 19's goodput target, as a share of the limit
	Quota        bool    `json:"quota,omitempty"`  // the target also asks ≤ 1 % of attempts refused
}

var resultsMu sync.Mutex

// record appends r to the results file, if REBOUND_FAULTS_RESULTS names
// one.
func record(t *testing.T, r result) {
	t.Helper()
	path := os.Getenv("REBOUND_FAULTS_RESULTS")
	if path == "" {
		return
	}
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("REBOUND_FAULTS_RESULTS: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatalf("REBOUND_FAULTS_RESULTS: %v", err)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(x float64) string { return fmt.Sprintf("%.0f %%", 100*x) }

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func fmtLatency(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// allClients are the five clients of issue 19's tables: plain, rebound's
// defaults, rebound without breaker, go-retryablehttp, failsafe-go.
func allClients(t *testing.T) []*client {
	t.Helper()
	return append(newClients(t), newPeerClients(t)...)
}

// TestRateLimitNginx: nginx's limit_req at 50 r/s per client, without a
// burst and with burst=10 nodelay (the excess within the burst is served
// at once, beyond it refused), refusing with 429 or with 503, each with
// Retry-After: 1. Goodput is what reached the origin behind nginx.
func TestRateLimitNginx(t *testing.T) {
	for _, sc := range []struct {
		path  string
		burst int
	}{{"/limit429/", 0}, {"/limit503/", 0}, {"/limit429burst/", 10}, {"/limit503burst/", 10}} {
		t.Run(strings.Trim(sc.path, "/"), func(t *testing.T) {
			o := newOrigin(64, false)
			orig := startOrigin(t, o)
			addr := startNginx(t, nginxConfig{
				Rate: limitRate, Origin: orig.Listener.Addr().String(),
				Upstream: orig.Listener.Addr().String(), ReadTimeout: "1s",
			})
			status := sc.path[6:9]
			name := fmt.Sprintf("nginx limit_req %d r/s, %s, %s + Retry-After: 1", limitRate, map[int]string{0: "burst 0", 10: "burst=10 nodelay"}[sc.burst], status)
			s := rlScenario{name: name, burst: sc.burst, settle: time.Second, duration: 6 * time.Second, timeout: 5 * time.Second}
			cs := allClients(t)
			start := time.Now()
			o.countHits(start)
			rows, lag := runClosedLoop(t, s, start, cs, func(*client) string { return "http://" + addr + sc.path },
				func(c *client, from, to time.Time) (int64, int64) { return o.hitsBetween(c, from, to), -1 })
			s.report(t, rows, lag)
			checkConnections(t, cs)
		})
	}
}

// limitServer is a Go rate limiter in front of a 200 with a small body:
// decide, called under the lock with the instant of the request, says
// whether it is admitted and may set headers; a refusal is answered with
// refuse.
type limitServer struct {
	mu     sync.Mutex
	decide func(now time.Time, h http.Header) bool
	refuse int

	admitted, refused atomic.Int64
	admittedAt        *timeBins // by the instant the request arrived
	refusedAt         *timeBins
}

func (s *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := time.Now()
	ok := s.decide(now, w.Header())
	s.mu.Unlock()
	if !ok {
		s.refused.Add(1)
		s.refusedAt.add(now)
		w.WriteHeader(s.refuse)
		w.Write([]byte("rate limited\n"))
		return
	}
	s.admitted.Add(1)
	s.admittedAt.add(now)
	w.Write([]byte("ok\n"))
}

// tokenBucket admits a request when it holds a token; it holds at most
// burst, refilled at rate a second, and starts full.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// take takes a token at now, or says how long until there is one.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// decide answers 429 with Retry-After: the wait for the next token in
// whole seconds, rounded up.
func (b *tokenBucket) decide(now time.Time, h http.Header) bool {
	ok, wait := b.take(now)
	if !ok {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	return ok
}

// leakyBucket is a leaky bucket as a meter of capacity one: it drains one
// request per interval, and a request that finds it not yet drained is
// refused (503 + Retry-After: 1). Admitted requests are at least interval
// apart.
type leakyBucket struct {
	interval time.Duration
	next     time.Time
}

func (b *leakyBucket) decide(now time.Time, h http.Header) bool {
	if now.Before(b.next) {
		h.Set("Retry-After", "1")
		return false
	}
	b.next = now.Add(b.interval)
	return true
}

// fixedWindow admits quota requests per window, the windows counted from
// origin, and announces it in every response with the IETF draft -11
// headers: RateLimit-Policy: "fixed";q=Q;w=W and RateLimit:
// "fixed";r=left;t=seconds to the window's end, rounded up. Over the
// quota it answers 429 (with r=0, no Retry-After).
type fixedWindow struct {
	quota  int
	window time.Duration
	origin time.Time
	cur    int64
	used   int
}

func (f *fixedWindow) decide(now time.Time, h http.Header) bool {
	idx := int64(max(now.Sub(f.origin), 0) / f.window)
	if idx != f.cur {
		f.cur, f.used = idx, 0
	}
	ok := f.used < f.quota
	if ok {
		f.used++
	}
	reset := f.origin.Add(time.Duration(idx+1) * f.window).Sub(now)
	h.Set("RateLimit-Policy", fmt.Sprintf(`"fixed";q=%d;w=%d`, f.quota, int(f.window/time.Second)))
	h.Set("RateLimit", fmt.Sprintf(`"fixed";r=%d;t=%d`, f.quota-f.used, int(math.Ceil(reset.Seconds()))))
	return ok
}

// startLimiters starts one limitServer per client, made by mk, on
// 127.0.0.1 until the test ends; its requests are counted by their
// instant from start.
func startLimiters(t *testing.T, start time.Time, cs []*client, mk func() *limitServer) (url func(*client) string, read counts) {
	t.Helper()
	srvs := make(map[*client]*limitServer, len(cs))
	urls := make(map[*client]string, len(cs))
	for _, c := range cs {
		ls := mk()
		ls.admittedAt, ls.refusedAt = newTimeBins(start), newTimeBins(start)
		srv := httptest.NewServer(ls)
		t.Cleanup(srv.Close)
		srvs[c], urls[c] = ls, srv.URL+"/"
	}
	return func(c *client) string { return urls[c] },
		func(c *client, from, to time.Time) (int64, int64) {
			return srvs[c].admittedAt.between(from, to), srvs[c].refusedAt.between(from, to)
		}
}

// TestRateLimitGo: the three Go limiters of issue 19, one per client.
func TestRateLimitGo(t *testing.T) {
	t.Run("token bucket", func(t *testing.T) {
		cs := allClients(t)
		start := time.Now()
		url, read := startLimiters(t, start, cs, func() *limitServer {
			b := newTokenBucket(limitRate, 5)
			return &limitServer{decide: b.decide, refuse: http.StatusTooManyRequests}
		})
		s := rlScenario{name: "Go token bucket 50/s burst 5, 429 + Retry-After (whole seconds, rounded up)", burst: 5,
			settle: time.Second, duration: 6 * time.Second, timeout: 5 * time.Second}
		rows, lag := runClosedLoop(t, s, start, cs, url, read)
		s.report(t, rows, lag)
		checkConnections(t, cs)
	})
	t.Run("leaky bucket", func(t *testing.T) {
		cs := allClients(t)
		start := time.Now()
		url, read := startLimiters(t, start, cs, func() *limitServer {
			b := &leakyBucket{interval: time.Second / limitRate}
			return &limitServer{decide: b.decide, refuse: http.StatusServiceUnavailable}
		})
		s := rlScenario{name: "Go leaky bucket, one request per 20 ms, 503 + Retry-After: 1",
			settle: time.Second, duration: 6 * time.Second, timeout: 5 * time.Second}
		rows, lag := runClosedLoop(t, s, start, cs, url, read)
		s.report(t, rows, lag)
		checkConnections(t, cs)
	})
	t.Run("fixed window", func(t *testing.T) {
		cs := allClients(t)
		// The windows start with the run, and the counted part is whole
		// windows: [2 s, 6 s).
		start := time.Now()
		url, read := startLimiters(t, start, cs, func() *limitServer {
			f := &fixedWindow{quota: 2 * limitRate, window: 2 * time.Second, origin: start}
			return &limitServer{decide: f.decide, refuse: http.StatusTooManyRequests}
		})
		s := rlScenario{name: "Go fixed window, 100 per 2 s announced in RateLimit / RateLimit-Policy (draft -11), 429 over it", quota: true,
			settle: 2 * time.Second, duration: 6 * time.Second, timeout: 5 * time.Second}
		rows, lag := runClosedLoop(t, s, start, cs, url, read)
		s.report(t, rows, lag)
		checkConnections(t, cs)
	})
}

// TestRateLimitOpenLoop: calls arrive at 80 % of a token bucket's rate
// (40/s against 50/s, burst 5), each in its own goroutine, for 6 s:
// evenly spaced, and as a Poisson process (whose bursts the bucket
// sometimes refuses). Under the limit no call should wait: issue 19's
// target is rebound's p99 call latency within 2× the plain client's. It is
// printed twice: over every call, where a refused call costs rebound its
// Retry-After and plain nothing (it fails at once), and over the calls
// the server never refused, which is where a chain that paces or queues
// calls it need not shows. The assertion is that no rebound call the
// server never refused waits half a second, which would mean the chain
// paced or paused a host that admitted it.
func TestRateLimitOpenLoop(t *testing.T) {
	const (
		rate = 0.8 * limitRate
		run  = 6 * time.Second
	)
	type arm struct {
		arrivals string
		c        *client
	}
	var arms []arm
	for _, arrivals := range []string{"even", "Poisson"} {
		cs := newClients(t)[:2] // plain, rebound
		for _, c := range cs {
			arms = append(arms, arm{arrivals, c})
		}
	}
	cs := make([]*client, len(arms))
	for i, a := range arms {
		cs[i] = a.c
	}
	start := time.Now()
	url, read := startLimiters(t, start, cs, func() *limitServer {
		b := newTokenBucket(limitRate, 5)
		return &limitServer{decide: b.decide, refuse: http.StatusTooManyRequests}
	})
	l := load{timeout: 5 * time.Second, method: http.MethodGet}
	stopLag := sampleLag()
	var wg sync.WaitGroup
	for i, a := range arms {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 19))
			start := time.Now()
			next := time.Duration(0)
			for n := 0; next < run; n++ {
				time.Sleep(time.Until(start.Add(next)))
				wg.Go(func() { a.c.call(context.Background(), url(a.c), l, fmt.Sprintf("%s-%d", a.c.id, n)) })
				if a.arrivals == "even" {
					next += time.Duration(float64(time.Second) / rate)
				} else {
					next += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
				}
			}
		})
	}
	wg.Wait()
	lag := stopLag()
	var b strings.Builder
	fmt.Fprintf(&b, "open loop at 80 %% of a token bucket's rate: %.0f calls/s against %d/s burst 5 (429 + Retry-After), %s, deadline %s per call; machine lag up to %s\n",
		rate, limitRate, run, l.timeout, lag.Round(time.Millisecond))
	fmt.Fprintf(&b, "  %-9s %-24s %7s %7s %9s %9s %9s %9s %14s\n", "arrivals", "client", "calls", "ok %", "refused", "p50", "p99", "max", "p99 unrefused")
	p99 := map[string]map[string]time.Duration{}
	unrefused := map[string]map[string]time.Duration{}
	for _, a := range arms {
		adm, ref := read(a.c, start, start.Add(time.Hour))
		refused := 0.0
		if adm+ref > 0 {
			refused = float64(ref) / float64(adm+ref)
		}
		q := a.c.latencyQuantile(0.99)
		if p99[a.arrivals] == nil {
			p99[a.arrivals] = map[string]time.Duration{}
		}
		p99[a.arrivals][a.c.name] = q
		if unrefused[a.arrivals] == nil {
			unrefused[a.arrivals] = map[string]time.Duration{}
		}
		cq := a.c.unrefusedQuantile(0.99)
		unrefused[a.arrivals][a.c.name] = cq
		fmt.Fprintf(&b, "  %-9s %-24s %7d %7.1f %8.1f%% %9s %9s %9s %14s\n", a.arrivals, a.c.name, a.c.calls.Load(), 100*a.c.okShare(), 100*refused,
			fmtLatency(a.c.latencyQuantile(0.5)), fmtLatency(q), fmtLatency(a.c.latencyQuantile(1)), fmtLatency(cq))
		n, _ := a.c.earlyAttempts()
		record(t, result{Scenario: "open loop, " + a.arrivals + " arrivals, 40/s against a token bucket 50/s burst 5", Client: a.c.name, Lag: ms(lag),
			Attempts: float64(a.c.calls.Load()), Refused: refused, P50: ms(a.c.latencyQuantile(0.5)), P99: ms(q), P99Unrefused: ms(cq), OK: a.c.okShare(), Early: n})
	}
	for _, arrivals := range []string{"even", "Poisson"} {
		pl, rb := p99[arrivals]["plain"], p99[arrivals]["rebound"]
		fmt.Fprintf(&b, "  target (issue 19), %s arrivals: rebound's p99 %s within 2× plain's %s: %s\n", arrivals,
			fmtLatency(rb), fmtLatency(pl), metWord(rb <= 2*pl))
		pl, rb = unrefused[arrivals]["plain"], unrefused[arrivals]["rebound"]
		fmt.Fprintf(&b, "  the same over the calls the server never refused: rebound's p99 %s within 2× plain's %s: %s\n",
			fmtLatency(rb), fmtLatency(pl), metWord(rb <= 2*pl))
	}
	t.Log(b.String())
	for _, a := range arms {
		if a.arrivals == "even" && isRebound(a.c) {
			expect(t, rateLimitGoodput, a.c.latencyQuantile(0.99) < 500*time.Millisecond,
				"%s: with calls evenly spaced under the limit, p99 call latency %s (a call waited for a hint or a pace)", a.c.name, fmtLatency(a.c.latencyQuantile(0.99)))
		}
		if isRebound(a.c) {
			expect(t, rateLimitGoodput, a.c.unrefusedQuantile(1) < 500*time.Millisecond,
				"%s, %s arrivals: a call the server never refused took %s (the chain paced or paused a host that admitted it)", a.c.name, a.arrivals, fmtLatency(a.c.unrefusedQuantile(1)))
		}
		expect(t, always, !isRebound(a.c) || func() bool { n, _ := a.c.earlyAttempts(); return n == 0 }(),
			"%s: attempts went before their own call's wait hint ended", a.c.name)
	}
	checkConnections(t, cs)
}

// binWidth is the resolution of timeBins.
const binWidth = 10 * time.Millisecond

// timeBins counts events by their instant, in bins of binWidth from start,
// for 30 s (later events are not counted).
type timeBins struct {
	start time.Time
	n     [3000]atomic.Int64
}

func newTimeBins(start time.Time) *timeBins { return &timeBins{start: start} }

// add counts an event at now; a nil b counts nothing.
func (b *timeBins) add(now time.Time) {
	if b == nil {
		return
	}
	if i := int(now.Sub(b.start) / binWidth); i >= 0 && i < len(b.n) {
		b.n[i].Add(1)
	}
}

// between returns the events in [from, to), to the bin.
func (b *timeBins) between(from, to time.Time) int64 {
	lo, hi := int(from.Sub(b.start)/binWidth), int(to.Sub(b.start)/binWidth)
	var n int64
	for i := max(lo, 0); i < min(hi, len(b.n)); i++ {
		n += b.n[i].Load()
	}
	return n
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rs/zerolog"
)

// callHeader carries the workload's id of a call on every attempt, so the
// server can tell a retry from a new call. Every library copies the
// caller's headers to its retries.
const callHeader = "X-Demo-Call"

const (
	// failShare is the share of requests (flaky) and of connections
	// (resets) that fail.
	failShare = 0.3
	// limitShare is the rate-limit phase's bucket rate, as a share of the
	// offered call rate.
	limitShare = 0.5
	// hint is the Retry-After the rate limiter sends.
	hint = time.Second
	// maxAttemptLog bounds the per-attempt log kept for the chart.
	maxAttemptLog = 1 << 20
)

// serverCounts is what the server saw during one phase, by arrival time.
type serverCounts struct {
	attempts int
	// early counts attempts that arrived while a Retry-After this server
	// had sent was still running; earlyRetries those among them that
	// repeated the very call the hint was sent to.
	early, earlyRetries int
	// served counts the 200s the server sent (a reset may still lose
	// them).
	served int
}

// effect is one POST's side effect: how often it ran, and the phase of
// its first run.
type effect struct {
	runs  int
	phase int
}

// server is the scripted server of one strategy: a real httptest.Server on
// 127.0.0.1 behind an in-process toxiproxy, both fresh for each strategy.
// Its behaviour follows the schedule, by the offset of each request's
// arrival from the run's start.
type server struct {
	sched schedule
	since func() time.Duration
	http  *httptest.Server
	proxy *toxiproxy.Proxy
	url   string // the proxy's, which clients call
	// dedup, when set, runs the POSTs the script lets through behind
	// rebound's idempotency.Middleware: a repeated key gets the stored
	// answer instead of a second run.
	dedup http.Handler

	mu          sync.Mutex
	rng         *rand.Rand
	bucket      tokenBucket
	bucketPhase int
	turn        int           // alternates 429 and 503 over the limit
	hostHint    time.Duration // offset until which the last hint runs
	callHint    map[string]time.Duration
	perCall     map[string]int // attempts per call id
	counts      []serverCounts
	arrivals    []time.Duration // per attempt, bounded by maxAttemptLog
	effects     map[string]*effect
}

// newServer starts a scripted server and a toxiproxy in front of it.
// rate is the offered call rate (calls/s), which sets the rate limiter.
func newServer(sched schedule, since func() time.Duration, rate float64, seed uint64, dedup bool) (*server, error) {
	s := &server{
		sched:       sched,
		since:       since,
		rng:         rand.New(rand.NewPCG(seed, 0x5eed)),
		bucket:      newTokenBucket(limitShare*rate, max(2, limitShare*rate/5)),
		bucketPhase: -1,
		callHint:    make(map[string]time.Duration),
		perCall:     make(map[string]int),
		counts:      make([]serverCounts, len(sched)),
		effects:     make(map[string]*effect),
	}
	if dedup {
		mw := idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{})
		s.dedup = mw(http.HandlerFunc(s.runPOST))
	}
	s.http = httptest.NewServer(s)
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	s.proxy = toxiproxy.NewProxy(api, "demo", "127.0.0.1:0", s.http.Listener.Addr().String())
	if err := s.proxy.Start(); err != nil {
		s.http.Close()
		return nil, fmt.Errorf("demo: starting toxiproxy: %w", err)
	}
	s.url = "http://" + s.proxy.Listen
	return s, nil
}

// close stops the proxy, then the server.
func (s *server) close() {
	s.proxy.Stop()
	s.http.CloseClientConnections()
	s.http.Close()
}

// resetToxics are the toxics of the resets phase: an upstream reset (the
// request never reaches the server) on 15 % of connections and a
// downstream one (the server ran the request, the client loses the
// answer) on the rest needed for 30 % in all: 1 − 0.85·(1 − d) = 0.3.
var resetToxics = []string{
	`{"name":"reset_up","type":"reset_peer","stream":"upstream","toxicity":0.15,"attributes":{"timeout":0}}`,
	`{"name":"reset_down","type":"reset_peer","stream":"downstream","toxicity":0.17647,"attributes":{"timeout":0}}`,
}

// setResets adds (on) or removes the reset toxics.
func (s *server) setResets(on bool) error {
	for _, js := range resetToxics {
		if on {
			if _, err := s.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				return fmt.Errorf("demo: adding toxic: %w", err)
			}
			continue
		}
		name := js[len(`{"name":"`):]
		name = name[:strings.IndexByte(name, '"')]
		if err := s.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("demo: removing toxic %s: %w", name, err)
		}
	}
	return nil
}

// ServeHTTP answers as the current phase says, and counts.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	post := r.Method == http.MethodPost
	if post {
		// Read the whole body before judging: the effect needs it.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	now := s.since()
	i := s.sched.at(now)
	id := r.Header.Get(callHeader)

	status, sendHint := http.StatusOK, false
	s.mu.Lock()
	c := &s.counts[i]
	c.attempts++
	if id != "" {
		s.perCall[id]++
	}
	if len(s.arrivals) < maxAttemptLog {
		s.arrivals = append(s.arrivals, now)
	}
	if now < s.hostHint {
		c.early++
		if h, ok := s.callHint[id]; ok && now < h {
			c.earlyRetries++
		}
	}
	switch s.sched[i].kind {
	case outage:
		status = http.StatusServiceUnavailable
	case rateLimit:
		if s.bucketPhase != i {
			s.bucketPhase = i
			s.bucket.fill(now)
		}
		if !s.bucket.take(now) {
			status, sendHint = http.StatusTooManyRequests, true
			if s.turn++; s.turn%2 == 0 {
				status = http.StatusServiceUnavailable
			}
			until := now + hint
			s.hostHint = max(s.hostHint, until)
			if id != "" {
				s.callHint[id] = until
			}
		}
	case flaky:
		if s.rng.Float64() < failShare {
			status = http.StatusServiceUnavailable
		}
	}
	if status == http.StatusOK {
		c.served++
		if post && s.dedup == nil {
			s.effectLocked(id, i)
		}
	}
	s.mu.Unlock()

	if s.sched[i].kind == resets {
		// One request per connection, so that 30 % of connections is 30 %
		// of requests: with keep-alive a client that found a good
		// connection would never meet the fault.
		w.Header().Set("Connection", "close")
	}
	if status == http.StatusOK && post && s.dedup != nil {
		s.dedup.ServeHTTP(w, r)
		return
	}
	if sendHint {
		w.Header().Set("Retry-After", fmt.Sprint(int(hint/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status":%d,"phase":%q}`, status, s.sched[i].name)
}

// effectLocked runs the effect of POST id, arrived in phase i. s.mu must
// be held.
func (s *server) effectLocked(id string, i int) {
	if id == "" {
		return
	}
	e := s.effects[id]
	if e == nil {
		e = &effect{phase: i}
		s.effects[id] = e
	}
	e.runs++
}

// runPOST is the handler behind the idempotency middleware: it runs the
// effect and answers 200.
func (s *server) runPOST(w http.ResponseWriter, r *http.Request) {
	now := s.since()
	i := s.sched.at(now)
	s.mu.Lock()
	s.effectLocked(r.Header.Get(callHeader), i)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":200,"phase":%q}`, s.sched[i].name)
}

// phaseCounts returns the counts of phase i so far.
func (s *server) phaseCounts(i int) serverCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[i]
}

// callAttempts returns how many attempts of each call reached the server,
// and how many calls were sent a Retry-After.
func (s *server) callAttempts() (perCall map[string]int, hinted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.perCall), len(s.callHint)
}

// snapshot returns a copy of the per-phase counts, the arrival log, and
// per phase how many POSTs had their effect run more than once.
func (s *server) snapshot() (counts []serverCounts, arrivals []time.Duration, dups []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts = append([]serverCounts(nil), s.counts...)
	arrivals = append([]time.Duration(nil), s.arrivals...)
	dups = make([]int, len(s.sched))
	for _, e := range s.effects {
		if e.runs > 1 {
			dups[e.phase]++
		}
	}
	return counts, arrivals, dups
}

// tokenBucket is a plain token bucket on offsets: rate tokens per second,
// at most burst. Not safe for concurrent use.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Duration
}

func newTokenBucket(rate, burst float64) tokenBucket {
	return tokenBucket{rate: rate, burst: burst, tokens: burst}
}

// fill makes the bucket full at offset now.
func (b *tokenBucket) fill(now time.Duration) { b.tokens, b.last = b.burst, now }

// take spends one token at offset now, if there is one.
func (b *tokenBucket) take(now time.Duration) bool {
	if now > b.last {
		b.tokens = min(b.burst, b.tokens+b.rate*(now-b.last).Seconds())
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// countingDialer counts the TCP connections a client opens, by offset.
type countingDialer struct {
	since func() time.Duration
	d     net.Dialer
	mu    sync.Mutex
	at    []time.Duration
}

// netDialer is go-cleanhttp's dialer.
func netDialer() net.Dialer {
	return net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	if len(c.at) < maxAttemptLog {
		c.at = append(c.at, c.since())
	}
	c.mu.Unlock()
	return c.d.DialContext(ctx, network, addr)
}

func (c *countingDialer) dials() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.at...)
}

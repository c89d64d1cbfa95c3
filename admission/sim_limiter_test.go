package admission_test

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The limiter models of the simulation (sim_test.go): in-memory servers
// behind a rate limiter, as http.RoundTrippers, in virtual time. Each
// decides when a request arrives, then takes its service time (a
// time.Sleep, virtual inside a synctest bubble) and answers.

// limiterKind names a limiter model and how it refuses.
type limiterKind uint8

const (
	// tokenHint: a token bucket of rate r and burst simBurst; 429 with
	// Retry-After in whole seconds, rounded up.
	tokenHint limiterKind = iota
	// tokenBare: the same bucket; a bare 429, no hint.
	tokenBare
	// gcra: a leaky bucket (GCRA) with no burst: one request per 1/r;
	// 503 with Retry-After: 1 (nginx limit_req, burst 0).
	gcra
	// windowHeaders: a fixed window of q = r·w requests per w; every
	// response carries RateLimit and RateLimit-Policy (draft -11); 429 with
	// r=0.
	windowHeaders
	// windowBare: the same window; a bare 429, no header at all.
	windowBare
)

var kindNames = [...]string{
	tokenHint:     "token b5 429+RA",
	tokenBare:     "token b5 429",
	gcra:          "gcra b0 503+RA:1",
	windowHeaders: "window 429+RateLimit",
	windowBare:    "window 429",
}

func (k limiterKind) String() string { return kindNames[k] }

const (
	// simBurst is the token buckets' burst.
	simBurst = 5
	// simWindow is the fixed windows' length.
	simWindow = 2 * time.Second
	// simService is every response's service time.
	simService = 3 * time.Millisecond
	// simBucket is the span goodput is counted over.
	simBucket = 10 * time.Second
)

// limiter is one rate-limited server. Safe for concurrent use.
type limiter struct {
	kind  limiterKind
	rate  float64 // requests per second
	start time.Time

	mu     sync.Mutex
	tokens float64   // token bucket
	last   time.Time // token bucket: last refill
	tat    time.Time // gcra: theoretical arrival time
	win    int64     // fixed window: its index
	count  int       // fixed window: requests admitted in it
	q      int       // fixed window: its quota

	// Counts, per simBucket from start.
	admitted, refused []int
	// Counts since start.
	nAdmitted, nRefused int
}

func newLimiter(kind limiterKind, rate float64, buckets int) *limiter {
	now := time.Now()
	l := &limiter{
		kind: kind, rate: rate, start: now,
		tokens: simBurst, last: now, tat: now, win: -1,
		q:        int(math.Round(rate * simWindow.Seconds())),
		admitted: make([]int, buckets),
		refused:  make([]int, buckets),
	}
	return l
}

// RoundTrip answers req after the service time: 200, or the kind's refusal.
func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	status, h := l.decide(time.Now())
	time.Sleep(simService)
	return &http.Response{
		StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Request: req,
	}, nil
}

// decide admits or refuses a request arriving at now.
func (l *limiter) decide(now time.Time) (int, http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, status, h := l.admit(now)
	if ok {
		l.nAdmitted++
	} else {
		l.nRefused++
	}
	if i := int(now.Sub(l.start) / simBucket); i < len(l.admitted) {
		if ok {
			l.admitted[i]++
		} else {
			l.refused[i]++
		}
	}
	return status, h
}

func (l *limiter) admit(now time.Time) (bool, int, http.Header) {
	switch l.kind {
	case tokenHint, tokenBare:
		l.tokens = min(simBurst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
		if l.tokens >= 1 {
			l.tokens--
			return true, http.StatusOK, nil
		}
		if l.kind == tokenBare {
			return false, http.StatusTooManyRequests, nil
		}
		secs := math.Ceil((1 - l.tokens) / l.rate)
		return false, http.StatusTooManyRequests, http.Header{"Retry-After": {strconv.Itoa(int(secs))}}
	case gcra:
		if now.Before(l.tat) {
			return false, http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
		}
		l.tat = now.Add(time.Duration(float64(time.Second) / l.rate))
		return true, http.StatusOK, nil
	default: // the fixed windows
		elapsed := now.Sub(l.start)
		if w := int64(elapsed / simWindow); w != l.win {
			l.win, l.count = w, 0
		}
		ok := l.count < l.q
		if ok {
			l.count++
		}
		status := http.StatusOK
		if !ok {
			status = http.StatusTooManyRequests
		}
		if l.kind == windowBare {
			return ok, status, nil
		}
		reset := time.Duration(l.win+1)*simWindow - elapsed
		t := int64(math.Ceil(reset.Seconds()))
		return ok, status, http.Header{
			"Ratelimit":        {`"default";r=` + strconv.Itoa(l.q-l.count) + ";t=" + strconv.FormatInt(t, 10)},
			"Ratelimit-Policy": {`"default";q=` + strconv.Itoa(l.q) + ";w=" + strconv.Itoa(int(simWindow/time.Second))},
		}
	}
}

// counts returns the admitted and refused requests of the first n buckets.
func (l *limiter) counts(n int) (admitted, refused []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.admitted[:n]...), append([]int(nil), l.refused[:n]...)
}

// total returns the requests admitted and refused so far.
func (l *limiter) total() (admitted, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nAdmitted, l.nRefused
}

package main

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleDefault(t *testing.T) {
	s, err := newSchedule(1)
	require.NoError(t, err)
	require.Len(t, s, 6)
	assert.Equal(t, 47*time.Second, s.total())
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{-time.Second, "healthy"},
		{0, "healthy"},
		{5*time.Second - 1, "healthy"},
		{5 * time.Second, "outage"},
		{15 * time.Second, "ratelimit"},
		{23 * time.Second, "flaky"},
		{31 * time.Second, "resets"},
		{39 * time.Second, "recovered"},
		{time.Hour, "recovered"},
	} {
		assert.Equal(t, tc.want, s[s.at(tc.at)].name, "at %v", tc.at)
	}
	assert.Equal(t, 15*time.Second, s.start(2))
	assert.Equal(t, 1, s.index(outage))
	assert.Equal(t, -1, schedule{}.index(outage))
}

func TestScheduleBadScale(t *testing.T) {
	for _, scale := range []float64{0, -1, math.NaN(), math.Inf(1), 101, 0.0001} {
		_, err := newSchedule(scale)
		assert.Error(t, err, "scale %v", scale)
	}
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(10, 3) // 10/s, burst 3
	b.fill(0)
	for i := range 3 {
		assert.True(t, b.take(0), "burst token %d", i)
	}
	assert.False(t, b.take(0), "empty")
	assert.False(t, b.take(99*time.Millisecond), "0.99 of a token")
	assert.True(t, b.take(100*time.Millisecond), "one token after 100 ms")
	assert.True(t, b.take(10*time.Second), "refilled")
	assert.True(t, b.take(10*time.Second))
	assert.True(t, b.take(10*time.Second))
	assert.False(t, b.take(10*time.Second), "never more than the burst")
	assert.False(t, b.take(5*time.Second), "time going back adds nothing")
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	assert.Zero(t, percentile(nil, 0.5))
	assert.Equal(t, 7*time.Millisecond, percentile(ms(7), 0.99))
	assert.Equal(t, 2*time.Millisecond, percentile(ms(3, 1, 2, 4), 0.5))
	assert.Equal(t, 4*time.Millisecond, percentile(ms(3, 1, 2, 4), 0.99))
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	assert.Equal(t, 50*time.Millisecond, percentile(ms(hundred...), 0.5))
	assert.Equal(t, 99*time.Millisecond, percentile(ms(hundred...), 0.99))
}

func TestFirstSuccessAfter(t *testing.T) {
	calls := []callRec{
		{start: 0, end: 5, ok: true, sent: true},   // before t
		{start: 8, end: 30, ok: true, sent: true},  // 20 after t
		{start: 9, end: 12, ok: false, sent: true}, // failed
		{start: 11, end: 14, ok: true, sent: true}, // 4 after t: the first
		{start: 11, end: 13, ok: true},             // never sent
	}
	assert.Equal(t, time.Duration(4), firstSuccessAfter(calls, 10))
	assert.Equal(t, time.Duration(-1), firstSuccessAfter(calls, 31))
}

// TestServerCounts drives the scripted server directly with a clock the
// test sets: the rate limiter's hints, early attempts, and POST effects.
func TestServerCounts(t *testing.T) {
	sched := schedule{
		{name: "ratelimit", kind: rateLimit, dur: 10 * time.Second},
		{name: "healthy", kind: healthy, dur: 10 * time.Second},
	}
	var now atomic.Int64
	srv, err := newServer(sched, func() time.Duration { return time.Duration(now.Load()) }, 4, 1, false) // bucket: 2/s, burst 2
	require.NoError(t, err)
	defer srv.close()
	send := func(at time.Duration, method, id string) *httptest.ResponseRecorder {
		now.Store(int64(at))
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("{}")
		}
		req := httptest.NewRequest(method, "/", body)
		req.Header.Set(callHeader, id)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	assert.Equal(t, 200, send(0, "GET", "a").Code)
	assert.Equal(t, 200, send(0, "GET", "b").Code)
	over := send(0, "GET", "c") // over the burst
	assert.Equal(t, http.StatusTooManyRequests, over.Code)
	assert.Equal(t, "1", over.Header().Get("Retry-After"))
	over = send(0, "GET", "d") // early: c's hint runs
	assert.Equal(t, http.StatusServiceUnavailable, over.Code, "429 and 503 alternate")
	assert.Equal(t, "1", over.Header().Get("Retry-After"))

	// c's retry at 0.5 s, inside its own hint (and the host's); a token
	// has come back, so it gets a 200.
	assert.Equal(t, 200, send(500*time.Millisecond, "GET", "c").Code)
	// A new call e at 0.6 s, inside the host's hint only; over the bucket,
	// so its 429 moves the host's hint to 1.6 s.
	assert.Equal(t, http.StatusTooManyRequests, send(600*time.Millisecond, "GET", "e").Code)
	// d's retry at 1.6 s respects every hint sent so far.
	assert.Equal(t, 200, send(1600*time.Millisecond, "GET", "d").Code)
	// The healthy phase runs every POST it receives: p twice.
	assert.Equal(t, 200, send(15*time.Second, "POST", "p").Code)
	send(15*time.Second, "POST", "p")
	send(15*time.Second, "POST", "q")

	counts, arrivals, dups := srv.snapshot()
	assert.Len(t, arrivals, 10)
	assert.Equal(t, 7, counts[0].attempts)
	// Early: d at 0 (c's hint was running), c at 0.5 s, e at 0.6 s.
	assert.Equal(t, 3, counts[0].early)
	assert.Equal(t, 1, counts[0].earlyRetries)
	assert.Equal(t, []int{0, 1}, dups)
	assert.Equal(t, 3, counts[1].served)
}

func TestNaive(t *testing.T) {
	var hits atomic.Int32
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if hits.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	client := &http.Client{Transport: naive{next: http.DefaultTransport, attempts: 4}}
	resp, err := client.Post(srv.URL, "text/plain", bytes.NewReader([]byte("hello")))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	mu.Lock()
	got := append([]string(nil), bodies...)
	mu.Unlock()
	assert.Equal(t, []string{"hello", "hello", "hello"}, got, "the body is replayed on every attempt")

	hits.Store(-10) // fails from now on
	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the last answer after 4 attempts")
	assert.Equal(t, int32(-6), hits.Load())
}

func TestJanitorCountsUnclosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	j := newJanitor(tr)
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := j.RoundTrip(req)
		require.NoError(t, err)
		if i == 0 {
			resp.Body.Close()
		}
	}
	assert.Equal(t, 2, j.closeAll())
	assert.Equal(t, 0, j.closeAll(), "closed once")
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-scale", "2", "-strategies", "rebound, plain"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 2.0, o.cfg.scale)
	require.Len(t, o.cfg.strategies, 2)
	assert.Equal(t, "plain", o.cfg.strategies[0].name, "in the table's order")
	assert.Equal(t, "rebound", o.cfg.strategies[1].name)

	for _, args := range [][]string{
		{"-strategies", "plain,hystrix"},
		{"-post-every", "0"},
		{"-scale", "x"},
		{"extra"},
	} {
		_, err := parseFlags(args, io.Discard)
		assert.Error(t, err, "%q", args)
	}
}

func TestTableAligned(t *testing.T) {
	rows := []row{
		{phase: "outage", strategy: "plain", calls: 10, attempts: 10, hasRecovery: true, recovery: -1},
		{phase: "outage", strategy: "retryablehttp", calls: 10, ok: 3, attempts: 52, early: 12, earlyRetry: 4, hasRecovery: true, recovery: 1500 * time.Millisecond},
		{phase: "all", strategy: "plain", calls: 1234},
	}
	var b strings.Builder
	writeTable(&b, rows)
	lines := strings.Split(b.String(), "\n")
	assert.Equal(t, len([]rune(lines[0])), len([]rune(lines[1])), "header and rows line up")
	assert.Equal(t, len([]rune(lines[0])), len([]rune(lines[2])))
	assert.Contains(t, lines[1], "never")
	assert.Contains(t, lines[2], "1.50s")
	assert.Contains(t, lines[2], "12 (4)")
	assert.Equal(t, "", lines[3], "a blank line between phases")
	assert.Contains(t, lines[4], "1234")
}

func TestRunBadConfig(t *testing.T) {
	sched, err := newSchedule(0.01)
	require.NoError(t, err)
	for _, cfg := range []config{
		{rate: 0, timeout: time.Second},
		{rate: 1e6, timeout: time.Second},
		{rate: 10},
	} {
		_, err := run(t.Context(), cfg, sched, io.Discard)
		assert.Error(t, err, "%+v", cfg)
	}
}

func TestRunTooManyCalls(t *testing.T) {
	sched, err := newSchedule(100) // 4,700 s
	require.NoError(t, err)
	_, err = run(t.Context(), config{rate: 2000, timeout: time.Second, strategies: strategies[:1]}, sched, io.Discard)
	assert.ErrorContains(t, err, "over the limit")
}

// TestServerDedup: with dedup the script's POSTs go through
// idempotency.Middleware, so a repeated key is answered from the store and
// its effect runs once; the phases still decide first.
func TestServerDedup(t *testing.T) {
	sched := schedule{
		{name: "outage", kind: outage, dur: time.Second},
		{name: "healthy", kind: healthy, dur: time.Second},
	}
	var now atomic.Int64
	srv, err := newServer(sched, func() time.Duration { return time.Duration(now.Load()) }, 10, 1, true)
	require.NoError(t, err)
	defer srv.close()
	post := func(at time.Duration, id string) *httptest.ResponseRecorder {
		now.Store(int64(at))
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"n":1}`))
		req.Header.Set(callHeader, id)
		req.Header.Set("Idempotency-Key", "demo-"+id)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	assert.Equal(t, http.StatusServiceUnavailable, post(0, "p").Code, "the outage answers before the middleware")
	first := post(1500*time.Millisecond, "p")
	assert.Equal(t, http.StatusOK, first.Code)
	again := post(1500*time.Millisecond, "p")
	assert.Equal(t, http.StatusOK, again.Code)
	assert.Equal(t, first.Body.String(), again.Body.String(), "the stored answer")
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	counts, _, dups := srv.snapshot()
	assert.Equal(t, []int{0, 0}, dups, "the effect ran once")
	assert.Equal(t, 2, counts[1].served)
	srv.mu.Lock()
	assert.Equal(t, 1, srv.effects["p"].runs)
	srv.mu.Unlock()
}

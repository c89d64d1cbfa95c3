package breaker_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// flaky is an httptest server whose status is set by the test and which
// counts the requests that reach it.
type flaky struct {
	*httptest.Server
	hits   atomic.Int64
	status atomic.Int64

	mu   sync.Mutex
	hold chan struct{} // when non-nil, requests wait on it
	held chan struct{} // signalled when a request starts waiting
}

// holdRequests makes the next requests wait until release is closed, and
// signal held when they start waiting; nil channels stop holding.
func (f *flaky) holdRequests(release, held chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold, f.held = release, held
}

func newFlaky(t *testing.T, code int) *flaky {
	f := &flaky{}
	f.status.Store(int64(code))
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		hold, held := f.hold, f.held
		f.mu.Unlock()
		if hold != nil {
			held <- struct{}{}
			<-hold
		}
		w.WriteHeader(int(f.status.Load()))
	}))
	t.Cleanup(f.Close)
	return f
}

// newTransport returns a breaker Transport over a fresh pooled base whose
// connections are closed when the test ends.
func newTransport(t *testing.T, cfg breaker.Config) *breaker.Transport {
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return breaker.NewTransport(base, cfg)
}

func TestFailingServerIsCutOff(t *testing.T) {
	srv := newFlaky(t, http.StatusInternalServerError)
	tr := newTransport(t, breaker.Config{})
	client := &http.Client{Transport: tr}
	for i := range breaker.DefaultMinCalls {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("call %d: status %d", i, resp.StatusCode)
		}
	}
	for i := range 50 {
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("call %d after the trip reached the server", i)
		}
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || !errors.Is(err, classify.ErrNotSent) || !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("refusal %v does not match the gate protocol", err)
		}
		// One probe per second, lengthened by up to 10 % of jitter.
		if oe.Host != srv.Listener.Addr().String() || oe.State != breaker.Open || oe.RetryIn <= 0 || oe.RetryIn > 1100*time.Millisecond {
			t.Fatalf("refusal %+v", oe)
		}
	}
	if n := srv.hits.Load(); n != breaker.DefaultMinCalls {
		t.Fatalf("server saw %d requests, want the %d before the trip", n, breaker.DefaultMinCalls)
	}
}

func TestHostsAreIndependent(t *testing.T) {
	bad := newFlaky(t, http.StatusServiceUnavailable)
	good := newFlaky(t, http.StatusOK)
	tr := newTransport(t, breaker.Config{})
	for range 20 {
		send(t, tr, bad.URL)
		if code, err := send(t, tr, good.URL); err != nil || code != 200 {
			t.Fatalf("healthy host: %d %v", code, err)
		}
	}
	if bad.hits.Load() != 10 || good.hits.Load() != 20 {
		t.Fatalf("hits: failing %d (want 10), healthy %d (want 20)", bad.hits.Load(), good.hits.Load())
	}
	states := map[string]breaker.State{}
	for _, s := range tr.Snapshot() {
		states[s.Host] = s.State
	}
	if states[bad.Listener.Addr().String()] != breaker.Open || states[good.Listener.Addr().String()] != breaker.Closed || len(states) != 2 {
		t.Fatalf("snapshot states %v", states)
	}
}

func TestWhatCountsAsFailure(t *testing.T) {
	// cancelNow cancels the context of the attempt in flight: the caller
	// gives up while the base is working on it.
	var cancelNow context.CancelFunc
	tests := []struct {
		name     string
		base     stub
		cancel   bool // each attempt's context is cancelled by the base
		wantOpen bool
	}{
		{name: "200", base: status(200)},
		{name: "404", base: status(404)},
		{name: "400", base: status(400)},
		{name: "429 rate limited", base: status(429)},
		{name: "429 with Retry-After", base: hinted(429, "Retry-After", "1")},
		{name: "503 with Retry-After", base: hinted(503, "Retry-After", "1")},
		{name: "502 with RateLimit", base: hinted(502, "Ratelimit", `"default";r=0;t=2`)},
		{name: "500 with X-RateLimit-Reset", base: hinted(500, "X-Ratelimit-Reset", "3")},
		{name: "503 with a malformed Retry-After", base: hinted(503, "Retry-After", "soon"), wantOpen: true},
		{name: "500", base: status(500), wantOpen: true},
		{name: "502", base: status(502), wantOpen: true},
		{name: "503", base: status(503), wantOpen: true},
		{name: "504", base: status(504), wantOpen: true},
		{name: "network error", base: func(*http.Request) (*http.Response, error) { return nil, errNet }, wantOpen: true},
		{name: "caller cancelled during the attempt", cancel: true, base: func(r *http.Request) (*http.Response, error) {
			cancelNow()
			return nil, r.Context().Err()
		}},
		{name: "attempt timeout counts", base: func(r *http.Request) (*http.Response, error) { return nil, classify.ErrAttemptTimeout }, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := breaker.NewTransport(tt.base, breaker.Config{})
			for range 30 {
				ctx := context.Background()
				if tt.cancel {
					ctx, cancelNow = context.WithCancel(ctx)
				}
				resp, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/"))
				if err == nil {
					resp.Body.Close()
				}
			}
			snap := tr.Snapshot()
			if len(snap) != 1 {
				t.Fatalf("snapshot %+v, want the one host", snap)
			}
			if open := snap[0].State == breaker.Open; open != tt.wantOpen {
				t.Fatalf("open = %v after 30 attempts, want %v", open, tt.wantOpen)
			}
		})
	}
}

// hinted returns a stub that answers every request with code and the
// wait-hint header name: value.
func hinted(code int, name, value string) stub {
	return func(*http.Request) (*http.Response, error) {
		h := http.Header{}
		h.Set(name, value)
		return &http.Response{StatusCode: code, Body: http.NoBody, Header: h}, nil
	}
}

// TestRateLimiterIsNotFailure: a real server rate-limits like nginx's
// limit_req with limit_req_status 503, answering 503 + Retry-After: 1 to
// most requests and 200 to the rest, to 20 concurrent callers. Its breaker
// must never open: every attempt reaches the server.
func TestRateLimiterIsNotFailure(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var hits atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1)%5 != 0 { // 80 % limited
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(code)
				}
			}))
			defer srv.Close()
			var got changes
			tr := newTransport(t, breaker.Config{OnStateChange: got.add})
			const callers, calls = 20, 25
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for range calls {
						if c, err := send(t, tr, srv.URL); err != nil || (c != code && c != 200) {
							t.Errorf("call: %d %v", c, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if n := hits.Load(); n != callers*calls || len(got.list()) != 0 {
				t.Fatalf("server saw %d of %d attempts; state changes %+v", n, callers*calls, got.list())
			}
			if s := tr.Snapshot()[0]; s.State != breaker.Closed || s.Evidence > 0 {
				t.Fatalf("after the limiter: %+v", s)
			}
		})
	}
}

// TestWaitHintsNeitherCloseNorLengthen: a probe answered with a wait hint
// leaves an open breaker as it was: not closed (the host has not shown it
// works), not reopened for longer (the next probe is still a second
// away).
func TestWaitHintsNeitherCloseNorLengthen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mode atomic.Int32 // 0: reset, 1: 503 + Retry-After: 30, 2: 200
		base := stub(func(*http.Request) (*http.Response, error) {
			switch mode.Load() {
			case 1:
				return hinted(503, "Retry-After", "30")(nil)
			case 2:
				return status(200)(nil)
			}
			return nil, errNet
		})
		var got changes
		tr := breaker.NewTransport(base, breaker.Config{Jitter: -1, OnStateChange: got.add})
		const url = "https://api.example.com/"
		for range breaker.DefaultMinCalls {
			send(t, tr, url)
		}
		mode.Store(1)
		for i := range 5 {
			time.Sleep(time.Second)
			if c, err := send(t, tr, url); c != 503 || err != nil {
				t.Fatalf("probe %d: %d %v, want the hinted 503", i, c, err)
			}
			_, err := send(t, tr, url)
			var oe *breaker.OpenError
			if !errors.As(err, &oe) || oe.RetryIn != time.Second {
				t.Fatalf("after hinted probe %d: %v, want open with the next probe in 1s", i, err)
			}
		}
		mode.Store(2)
		time.Sleep(time.Second)
		if c, err := send(t, tr, url); c != 200 || err != nil {
			t.Fatalf("probe to the recovered host: %d %v", c, err)
		}
		chs := got.list()
		if len(chs) != 2 || chs[0].To != breaker.Open || chs[0].OpenFor != time.Second || chs[1].To != breaker.Closed {
			t.Fatalf("changes %+v, want one trip (first probe in 1s) and one close", chs)
		}
	})
}

func TestBadInput(t *testing.T) {
	var calls atomic.Int64
	base := stub(func(*http.Request) (*http.Response, error) {
		calls.Add(1)
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	tr := breaker.NewTransport(base, breaker.Config{})
	if _, err := tr.RoundTrip(nil); err == nil || !strings.HasPrefix(err.Error(), "breaker: ") {
		t.Fatalf("nil request: %v", err)
	}
	if _, err := tr.RoundTrip(&http.Request{Method: "GET"}); err == nil {
		t.Fatal("nil URL: no error")
	}
	// A request without a host is passed through untracked: the base
	// reports the problem in its own words.
	req := get(t, context.Background(), "/relative")
	if _, err := tr.RoundTrip(req); err != nil || calls.Load() != 1 || tr.Len() != 0 {
		t.Fatalf("hostless request: err %v, base calls %d, tracked %d", err, calls.Load(), tr.Len())
	}
	// The zero values are usable.
	var zero breaker.Transport
	srv := newFlaky(t, 200)
	if code, err := send(t, &zero, srv.URL); err != nil || code != 200 || zero.Len() != 1 {
		t.Fatalf("zero Transport: %d %v, tracked %d", code, err, zero.Len())
	}
	zero.CloseIdleConnections()
	var b breaker.Breaker
	feed(t, &b, strings.Repeat("U", breaker.DefaultMinCalls))
	if oe := openError(t, &b); oe.State != breaker.Open || oe.RetryIn > 1100*time.Millisecond {
		t.Fatalf("zero Breaker: %+v", oe)
	}
	if got := (&breaker.OpenError{}).Error(); got != "breaker: circuit open for " {
		t.Fatalf("zero OpenError reads %q", got)
	}
}

func TestCustomKey(t *testing.T) {
	var got changes
	tr := breaker.NewTransport(status(500), breaker.Config{
		Key: func(r *http.Request) string {
			return r.Header.Get("X-Tenant") // "" means untracked
		},
		OnStateChange: got.add,
	})
	for i := range breaker.DefaultMinCalls {
		for _, tenant := range []string{"a", ""} {
			req := get(t, context.Background(), "https://h"+string(rune('0'+i))+".example.com/")
			if tenant != "" {
				req.Header.Set("X-Tenant", tenant)
			}
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
		}
	}
	s := tr.Snapshot()
	if len(s) != 1 || s[0].Host != "a" || s[0].State != breaker.Open {
		t.Fatalf("snapshot %+v, want one open breaker named a", s)
	}
}

func TestHookMayReadTheBreaker(t *testing.T) {
	// The hook runs outside every lock: reading the breaker or the
	// Transport from it must not deadlock.
	var tr *breaker.Transport
	var seen []breaker.HostState
	tr = breaker.NewTransport(status(500), breaker.Config{OnStateChange: func(ch breaker.StateChange) {
		seen = append(seen, tr.Snapshot()...)
	}})
	for range breaker.DefaultMinCalls {
		send(t, tr, "https://api.example.com/")
	}
	if len(seen) != 1 || seen[0].State != breaker.Open || seen[0].Trips != 1 {
		t.Fatalf("hook saw %+v", seen)
	}
}

func TestClosedPathDoesNotAllocate(t *testing.T) {
	tr := breaker.NewTransport(okBase, breaker.Config{})
	req := get(t, context.Background(), "https://api.example.com:443/x")
	tr.RoundTrip(req)
	if n := testing.AllocsPerRun(1000, func() { tr.RoundTrip(req) }); n != 0 {
		t.Fatalf("RoundTrip allocates %v times per call", n)
	}
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { tr.RoundTripAt(req, now) }); n != 0 {
		t.Fatalf("RoundTripAt allocates %v times per call", n)
	}
	b := breaker.New("api", breaker.Config{})
	if n := testing.AllocsPerRun(1000, func() {
		done, _ := b.Allow()
		done(classify.Healthy)
	}); n != 0 {
		t.Fatalf("Allow and done allocate %v times per call", n)
	}
}

// blackHole is a base that never answers: an attempt ends only when its
// context does, as with a server that accepts connections and hangs.
func blackHole(calls *atomic.Int64) stub {
	return func(req *http.Request) (*http.Response, error) {
		calls.Add(1)
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
}

func TestUnansweredCallsTripTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		tr := breaker.NewTransport(blackHole(&calls), breaker.Config{})
		call := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := tr.RoundTrip(get(t, ctx, "http://hung.test/"))
			return err
		}
		for i := range breaker.DefaultMinCalls {
			if err := call(); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call %d: %v, want the caller's deadline", i, err)
			}
		}
		start := time.Now()
		err := call()
		var oe *breaker.OpenError
		if !errors.As(err, &oe) {
			t.Fatalf("call 11: %v, want the circuit open after 10 unanswered calls", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the refusal took %v; it must not wait for the deadline", waited)
		}
		if n := calls.Load(); n != breaker.DefaultMinCalls {
			t.Fatalf("base saw %d calls, want %d", n, breaker.DefaultMinCalls)
		}
	})
}

func TestCallsOverBeforeSendingAreNotCounted(t *testing.T) {
	var calls atomic.Int64
	tr := breaker.NewTransport(blackHole(&calls), breaker.Config{})
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for i := range 20 {
		ctx := expired
		if i%2 == 1 {
			ctx = cancelled
		}
		if _, err := tr.RoundTrip(get(t, ctx, "http://api.test/")); err == nil || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("call %d: %v, want the context's error from the base", i, err)
		}
	}
	for _, hs := range tr.Snapshot() {
		t.Fatalf("a host was tracked for calls never sent: %+v", hs)
	}
	if n := calls.Load(); n != 20 {
		t.Fatalf("base saw %d calls, want 20: the base still reports the context's error", n)
	}
}

// TestPartialStallIsNotADeadHost: a host that stalls 20 % of its
// connections (toxiproxy's timeout toxic) is alive. Its callers' stalled
// attempts all end together, at their deadline, long after the fast
// successes that started later: 20 workers that start at once are all
// stalled within a few calls, and their failures arrive as one burst. In
// completion order that burst reads like a dead host; but every one of
// those attempts overlapped successes, which a dead host never gives.
func TestPartialStallIsNotADeadHost(t *testing.T) {
	for seed := range uint64(20) {
		synctest.Test(t, func(t *testing.T) {
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(seed, 1))
			base := stub(func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				stall := rng.Float64() < 0.2
				mu.Unlock()
				if stall {
					<-req.Context().Done()
					return nil, req.Context().Err()
				}
				time.Sleep(5 * time.Millisecond)
				return status(200)(req)
			})
			var got changes
			tr := breaker.NewTransport(base, breaker.Config{OnStateChange: got.add})
			end := time.Now().Add(3 * time.Second)
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					for time.Now().Before(end) {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						resp, err := tr.RoundTrip(get(t, ctx, "http://stalling.test/"))
						cancel()
						if err == nil {
							resp.Body.Close()
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			if n := got.opens(); n != 0 {
				t.Fatalf("seed %d: a host stalling 20 %% of calls tripped: %+v", seed, got.list())
			}
		})
	}
}

// TestConcurrentCallersOfADeadHost: the overlap rule never spares a dead
// host: 20 concurrent callers of a host that answers nothing trip its
// breaker with their first deadlines, as no success ever overlaps them.
func TestConcurrentCallersOfADeadHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		tr := breaker.NewTransport(blackHole(&calls), breaker.Config{})
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				for range 3 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					tr.RoundTrip(get(t, ctx, "http://dead.test/"))
					cancel()
				}
			})
		}
		wg.Wait()
		// The 20 first attempts, and the 9 that callers freed by the
		// first 9 deadlines sent before the 10th tripped the breaker.
		if s := tr.Snapshot()[0]; s.State != breaker.Open || calls.Load() > 20+9 {
			t.Fatalf("after 20 callers' deadlines: %+v, %d attempts; want open after at most 29", s, calls.Load())
		}
	})
}

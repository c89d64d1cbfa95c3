package breaker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
	for i := range 5 {
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
		if oe.Host != srv.Listener.Addr().String() || oe.State != breaker.Open || oe.RetryIn <= 0 || oe.RetryIn > 5*time.Second {
			t.Fatalf("refusal %+v", oe)
		}
	}
	if n := srv.hits.Load(); n != 5 {
		t.Fatalf("server saw %d requests, want the 5 before the trip", n)
	}
}

func TestHostsAreIndependent(t *testing.T) {
	bad := newFlaky(t, http.StatusServiceUnavailable)
	good := newFlaky(t, http.StatusOK)
	tr := newTransport(t, breaker.Config{})
	for range 10 {
		send(t, tr, bad.URL)
		if code, err := send(t, tr, good.URL); err != nil || code != 200 {
			t.Fatalf("healthy host: %d %v", code, err)
		}
	}
	if bad.hits.Load() != 5 || good.hits.Load() != 10 {
		t.Fatalf("hits: failing %d (want 5), healthy %d (want 10)", bad.hits.Load(), good.hits.Load())
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

func TestRetryAfterLengthensOpenTime(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		retryAfter string
		want       time.Duration
	}{
		{name: "no header", code: 503, want: 5 * time.Second},
		{name: "longer", code: 503, retryAfter: "30", want: 30 * time.Second},
		{name: "shorter never shortens", code: 503, retryAfter: "1", want: 5 * time.Second},
		{name: "capped", code: 503, retryAfter: "3600", want: 60 * time.Second},
		{name: "garbage ignored", code: 503, retryAfter: "soon", want: 5 * time.Second},
		{name: "only on 503", code: 500, retryAfter: "30", want: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got changes
				base := stub(func(*http.Request) (*http.Response, error) {
					h := http.Header{}
					if tt.retryAfter != "" {
						h.Set("Retry-After", tt.retryAfter)
					}
					return &http.Response{StatusCode: tt.code, Header: h, Body: http.NoBody}, nil
				})
				tr := breaker.NewTransport(base, breaker.Config{Jitter: -1, OnStateChange: got.add})
				for range 5 {
					send(t, tr, "https://api.example.com/")
				}
				chs := got.list()
				if len(chs) != 1 || chs[0].OpenFor != tt.want {
					t.Fatalf("changes %+v, want open for %v", chs, tt.want)
				}
				if lengthened := tt.want != 5*time.Second; lengthened != strings.Contains(chs[0].Reason, "Retry-After") {
					t.Fatalf("reason %q", chs[0].Reason)
				}
				time.Sleep(tt.want - time.Nanosecond)
				if _, err := send(t, tr, "https://api.example.com/"); !errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("before %v: %v", tt.want, err)
				}
			})
		})
	}
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
	feed(t, &b, "UUUUU")
	if oe := openError(t, &b); oe.State != breaker.Open || oe.RetryIn > 5*time.Second {
		t.Fatalf("zero Breaker: %+v", oe)
	}
	if got := (&breaker.OpenError{}).Error(); got != "breaker: circuit open for , next probe in 0s" {
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
	for i := range 10 {
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
	for range 5 {
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
		for i := range 5 {
			if err := call(); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call %d: %v, want the caller's deadline", i, err)
			}
		}
		start := time.Now()
		err := call()
		var oe *breaker.OpenError
		if !errors.As(err, &oe) {
			t.Fatalf("call 6: %v, want the circuit open after 5 unanswered calls", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the refusal took %v; it must not wait for the deadline", waited)
		}
		if n := calls.Load(); n != 5 {
			t.Fatalf("base saw %d calls, want 5", n)
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

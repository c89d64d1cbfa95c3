package rebound_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// statsServer answers /ok with 200, /missing with 404, /down with 503,
// /flaky with 503 on its first request and 200 after, and /busy with 503
// and Retry-After: 30.
func statsServer(t *testing.T) *httptest.Server {
	t.Helper()
	var flaky atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/ok":
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/flaky":
			if flaky.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case "/busy":
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/spent":
			w.Header().Set("RateLimit", `"default";r=0;t=30`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, c *http.Client, ctx context.Context, method, url string) (*http.Response, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	require.NoError(t, err)
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func hostOf(t *testing.T, s rebound.Stats, host string) rebound.HostStats {
	t.Helper()
	for _, h := range s.Hosts {
		if h.Host == host {
			return h
		}
	}
	t.Fatalf("no stats for host %q in %+v", host, s.Hosts)
	return rebound.HostStats{}
}

func TestStatsCallsRetriesGiveUps(t *testing.T) {
	srv := statsServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{MaxAttempts: 3, NoWait: true}))
	defer rt.CloseIdleConnections()
	c := &http.Client{Transport: rt}
	ctx := context.Background()

	for range 3 {
		_, err := do(t, c, ctx, http.MethodGet, srv.URL+"/ok")
		require.NoError(t, err)
	}
	_, err := do(t, c, ctx, http.MethodGet, srv.URL+"/missing") // final 4xx: not a give-up
	require.NoError(t, err)
	_, err = do(t, c, ctx, http.MethodGet, srv.URL+"/flaky") // 503, then 200
	require.NoError(t, err)
	_, err = do(t, c, ctx, http.MethodGet, srv.URL+"/down") // 503 three times
	require.NoError(t, err)
	_, err = do(t, c, ctx, http.MethodPost, srv.URL+"/ok") // a generated key
	require.NoError(t, err)
	_, err = do(t, c, idempotency.WithKey(ctx, "k-1"), http.MethodPost, srv.URL+"/ok") // the caller's key
	require.NoError(t, err)

	s := rt.Stats()
	h := hostOf(t, s, host)
	assert.Equal(t, uint64(8), h.Calls)
	assert.Equal(t, uint64(3+1+2+3+1+1), h.Attempts)
	assert.Equal(t, map[string]uint64{"status 503": 3}, h.Retries)
	assert.Equal(t, map[string]uint64{transport.StopAttempts: 1}, h.GiveUps)
	assert.Nil(t, h.Refusals)
	assert.Equal(t, uint64(1), h.KeysGenerated)
	assert.Equal(t, breaker.Closed, h.Breaker)
	assert.True(t, h.HasBudget)
	assert.Greater(t, h.RetryBalance, 0.0)

	h.Host, h.Breaker, h.RetryBalance, h.HasBudget = "", breaker.Closed, 0, false
	assert.Equal(t, h, s.Total, "one host: the total is that host's counts")
	assert.Equal(t, rebound.HostStats{Host: rebound.OtherHost}, s.Other)
	assert.Zero(t, s.OpenBreakers)
}

func TestStatsBreakerTripAndRefusals(t *testing.T) {
	srv := statsServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{MaxAttempts: 1}))
	defer rt.CloseIdleConnections()
	c := &http.Client{Transport: rt}

	// A dead host trips its breaker within 10 failures (Policy.Breaker);
	// the calls after it are refused without being sent.
	const calls = 20
	var refused int
	for range calls {
		if _, err := do(t, c, context.Background(), http.MethodGet, srv.URL+"/down"); err != nil {
			require.ErrorIs(t, err, breaker.ErrOpen)
			refused++
		}
	}
	require.Positive(t, refused, "the breaker never opened")

	h := hostOf(t, rt.Stats(), host)
	assert.Equal(t, uint64(calls), h.Calls)
	assert.Equal(t, uint64(calls-refused), h.Attempts, "refused attempts are not sent")
	assert.Equal(t, map[string]uint64{rebound.GateBreaker: uint64(refused)}, h.Refusals)
	assert.Equal(t, map[string]uint64{
		transport.StopAttempts: uint64(calls - refused),
		transport.StopRefused:  uint64(refused),
	}, h.GiveUps)
	assert.Equal(t, uint64(1), h.BreakerTrips)
	assert.Equal(t, breaker.Open, h.Breaker)
	assert.Equal(t, 1, rt.Stats().OpenBreakers)
}

func TestStatsBudgetRefusal(t *testing.T) {
	srv := statsServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	// A budget that allows no retry at all.
	rt := rebound.NewTransport(nil, rebound.WithPolicy(rebound.Policy{
		Retry:  transport.Config{NoWait: true},
		Budget: budget.Config{Ratio: budget.RatioConfig{Ratio: -1, MinPerSecond: -1}},
	}))
	defer rt.CloseIdleConnections()
	c := &http.Client{Transport: rt}

	resp, err := do(t, c, context.Background(), http.MethodGet, srv.URL+"/down")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the caller gets the real 503")

	h := hostOf(t, rt.Stats(), host)
	assert.Equal(t, uint64(1), h.Calls)
	assert.Equal(t, uint64(1), h.Attempts, "the refused retry was not sent")
	assert.Equal(t, map[string]uint64{"status 503": 1}, h.Retries)
	assert.Equal(t, map[string]uint64{rebound.GateBudget: 1}, h.Refusals)
	assert.Equal(t, map[string]uint64{transport.StopRefused: 1}, h.GiveUps)
}

func TestStatsHold(t *testing.T) {
	srv := statsServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil)
	defer rt.CloseIdleConnections()
	c := &http.Client{Transport: rt}

	// The server asks for 30 s; a call that has 5 s stops at once. The
	// third such answer, with nothing admitted since the first, pauses
	// the host: the next call, with 5 s too, is not sent.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		_, err := do(t, c, ctx, http.MethodGet, srv.URL+"/busy")
		require.NoError(t, err)
	}
	_, err := do(t, c, ctx, http.MethodGet, srv.URL+"/ok")
	require.ErrorIs(t, err, transport.ErrHeld)

	h := hostOf(t, rt.Stats(), host)
	assert.Equal(t, uint64(4), h.Calls)
	assert.Equal(t, uint64(3), h.Attempts)
	assert.Nil(t, h.Retries, "no retry was scheduled")
	assert.Equal(t, map[string]uint64{rebound.GateHint: 1}, h.Refusals)
	assert.Equal(t, map[string]uint64{transport.StopDeadline: 3, transport.StopHeld: 1}, h.GiveUps)
}

// TestStatsQuota: a quota spent for 30 s refuses the next call under
// its own gate, not the wait hint's.
func TestStatsQuota(t *testing.T) {
	srv := statsServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := rebound.NewTransport(nil)
	defer rt.CloseIdleConnections()
	c := &http.Client{Transport: rt}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := do(t, c, ctx, http.MethodGet, srv.URL+"/spent")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = do(t, c, ctx, http.MethodGet, srv.URL+"/ok")
	require.ErrorIs(t, err, admission.ErrQuota)
	h := hostOf(t, rt.Stats(), host)
	assert.Equal(t, map[string]uint64{rebound.GateQuota: 1}, h.Refusals)
}

// TestStatsHostBound checks the bound and the canonical host: spellings
// of one host are one host, and the hosts beyond MaxStatsHosts are counted
// together.
func TestStatsHostBound(t *testing.T) {
	rt := rebound.NewTransport(newOKStub(), rebound.WithPolicy(rebound.Policy{DisableBreaker: true}))
	send := func(url string) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		_, err = rt.RoundTrip(req)
		require.NoError(t, err)
	}
	for _, u := range []string{"http://api.test/", "HTTP://API.Test:80/x", "http://api.test./", "https://api.test:80/"} {
		send(u)
	}
	for i := range rebound.MaxStatsHosts + 10 {
		send(fmt.Sprintf("http://h%d.test/", i))
	}
	s := rt.Stats()
	require.Len(t, s.Hosts, rebound.MaxStatsHosts)
	assert.Equal(t, uint64(3), hostOf(t, s, "api.test").Calls)
	assert.Equal(t, uint64(1), hostOf(t, s, "api.test:80").Calls, "https: 80 is not the default port")
	// api.test and api.test:80 took two places.
	assert.Equal(t, uint64(12), s.Other.Calls)
	assert.Equal(t, rebound.OtherHost, s.Other.Host)
	assert.Equal(t, uint64(4+rebound.MaxStatsHosts+10), s.Total.Calls)
	assert.Equal(t, s.Total.Calls, s.Total.Attempts)
}

// TestStatsHostileHosts: a URL whose IPv6 zone holds raw bytes (url.Parse
// accepts them) and one whose host is longer than any reachable host are
// counted under hosts that are valid UTF-8 and at most 300 bytes, which
// every exporter can carry; two long hosts that differ past the cut stay
// apart.
func TestStatsHostileHosts(t *testing.T) {
	rt := rebound.NewTransport(newOKStub(), rebound.WithPolicy(rebound.Policy{DisableBreaker: true}))
	long := strings.Repeat("a", 400)
	for _, u := range []string{"http://[::1%25\xff]:1/", "http://[fe80::1%25\xc3\x28]/", "http://" + long + "1.test/", "http://" + long + "2.test/"} {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err, "url.Parse accepts %q", u)
		_, err = rt.RoundTrip(req)
		require.NoError(t, err)
	}
	s := rt.Stats()
	require.Len(t, s.Hosts, 4)
	for _, h := range s.Hosts {
		assert.True(t, utf8.ValidString(h.Host), "%q", h.Host)
		assert.LessOrEqual(t, len(h.Host), 300, "%q", h.Host)
		assert.Equal(t, uint64(1), h.Calls, "%q", h.Host)
	}
	assert.Equal(t, uint64(1), hostOf(t, s, `[::1%\xff]:1`).Calls)
}

// TestStatsConcurrent counts calls from many goroutines at once: no count
// is lost (and the race detector watches the shards).
func TestStatsConcurrent(t *testing.T) {
	rt := rebound.NewTransport(newOKStub())
	const goroutines, each = 16, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://h%d.test/", g%3), nil)
			for range each {
				if _, err := rt.RoundTrip(req); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s := rt.Stats()
	assert.Equal(t, uint64(goroutines*each), s.Total.Calls)
	assert.Equal(t, uint64(goroutines*each), s.Total.Attempts)
	require.Len(t, s.Hosts, 3)
	assert.Equal(t, []string{"h0.test", "h1.test", "h2.test"}, []string{s.Hosts[0].Host, s.Hosts[1].Host, s.Hosts[2].Host})
}

func TestStatsHealthyPathAllocates0(t *testing.T) {
	for name, opts := range map[string][]rebound.Option{
		"counters": nil,
		"observer": {rebound.WithObserver(rebound.Observer{Retry: func(transport.Event) {}})},
	} {
		t.Run(name, func(t *testing.T) {
			rt := rebound.NewTransport(newOKStub(), opts...)
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
			rt.RoundTrip(req) // the host's first call adds it
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := rt.RoundTrip(req); err != nil {
					t.Fatal(err)
				}
			})
			assert.Zero(t, allocs)
			assert.Equal(t, uint64(1002), rt.Stats().Total.Calls)
		})
	}
}

func TestWithoutStats(t *testing.T) {
	rt := rebound.NewTransport(newOKStub(), rebound.WithoutStats())
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	_, err := rt.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, rebound.Stats{}, rt.Stats())
}

// TestWithObserverTwice checks that every observer given receives every
// event, in the order given.
func TestWithObserverTwice(t *testing.T) {
	srv := statsServer(t)
	var mu sync.Mutex
	var got []string
	record := func(who string) rebound.Observer {
		return rebound.Observer{
			Retry: func(e transport.Event) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, who+" "+e.Kind.String())
			},
			Breaker: func(breaker.StateChange) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, who+" breaker")
			},
		}
	}
	rt := rebound.NewTransport(nil,
		rebound.WithRetry(transport.Config{MaxAttempts: 2, NoWait: true}),
		rebound.WithObserver(record("a")),
		rebound.WithObserver(rebound.Observer{}), // an empty one changes nothing
		rebound.WithObserver(record("b")))
	defer rt.CloseIdleConnections()
	_, err := do(t, &http.Client{Transport: rt}, context.Background(), http.MethodGet, srv.URL+"/flaky")
	require.NoError(t, err)
	assert.Equal(t, []string{"a attempt", "b attempt", "a retry", "b retry", "a attempt", "b attempt"}, got)
}

// slowFirst answers its first request after a second and the rest at once.
type slowFirst struct {
	mu sync.Mutex
	n  int
}

func (s *slowFirst) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if n == 1 {
		select {
		case <-time.After(time.Second):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func TestStatsCountHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{}
		rt := rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{
			DisableBreaker: true,
			Retry:          transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}},
		}))
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		time.Sleep(2 * time.Second) // the loser's grace ends; it is cancelled
		s := rt.Stats()
		assert.EqualValues(t, 1, s.Total.Calls)
		assert.EqualValues(t, 1, s.Total.Hedges, "the hedge is counted")
		assert.EqualValues(t, 2, s.Total.Attempts, "the first attempt and its hedge")
	})
}

// Stats counts a hedge only when it was sent: against a real server's own
// count, in each of issue 20's scenarios (hedges refused by the retry
// budget; a hedge told by a 429 to wait, with MaxHedges 2), Attempts is
// the requests the server received and Hedges those that were hedges.
func TestStatsHedgesMatchServer(t *testing.T) {
	for name, c := range map[string]struct {
		policy func(*rebound.Policy)
		answer func(w http.ResponseWriter, r *http.Request, attempt string)
	}{
		"budget refuses hedges": {
			policy: func(p *rebound.Policy) {
				p.Budget = budget.Config{Ratio: budget.RatioConfig{Ratio: 0.1, MinPerSecond: -1}}
			},
		},
		"429 stops hedging": {
			policy: func(p *rebound.Policy) { p.Retry.Hedge.MaxHedges = 2 },
			answer: func(w http.ResponseWriter, r *http.Request, attempt string) {
				if attempt == "2" {
					w.Header().Set("Retry-After", "5")
					w.WriteHeader(http.StatusTooManyRequests)
				}
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var sent, hedges atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sent.Add(1)
				a := r.Header.Get("X-Attempt")
				if a != "1" {
					hedges.Add(1)
				}
				if a == "1" {
					// The first attempt is slow: it is hedged.
					select {
					case <-r.Context().Done():
						return
					case <-time.After(80 * time.Millisecond):
					}
				}
				if c.answer != nil {
					c.answer(w, r, a)
				}
			}))
			defer srv.Close()
			p := rebound.Policy{DisableBreaker: true, Retry: transport.Config{AttemptHeader: "X-Attempt", MaxAttempts: 3,
				Hedge: &transport.HedgeConfig{Delay: 20 * time.Millisecond}}}
			c.policy(&p)
			rt := rebound.NewTransport(nil, rebound.WithPolicy(p))
			defer rt.CloseIdleConnections()
			client := &http.Client{Transport: rt}
			const calls = 20
			for range calls {
				resp, err := do(t, client, context.Background(), http.MethodGet, srv.URL+"/")
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
			// Losers may still be on their way: wait for the counts to agree.
			var s rebound.Stats
			ok := assert.Eventually(t, func() bool {
				s = rt.Stats()
				return s.Total.Attempts == uint64(sent.Load()) && s.Total.Hedges == uint64(hedges.Load())
			}, 5*time.Second, 10*time.Millisecond)
			t.Logf("%d calls: server saw %d requests, %d hedges; Stats: %d attempts, %d hedges", calls, sent.Load(), hedges.Load(), s.Total.Attempts, s.Total.Hedges)
			if ok {
				assert.Positive(t, hedges.Load())
				assert.Less(t, hedges.Load(), int64(2*calls), "some hedges were refused or not sent")
			}
		})
	}
}

package transport_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowStub is a scripted base for the hedging and learned-timeout tests,
// used inside synctest bubbles: answer says, for each attempt it receives,
// how long the "server" takes before its response headers and with which
// status (it is called with the stub's lock held, so it may keep state) (a negative delay: never, until the attempt is cancelled). It
// records every attempt: when it came, whether it was a hedge, how it
// ended, and whether its response body was closed.
type slowStub struct {
	answer func(req *http.Request, i int) (time.Duration, int)

	mu   sync.Mutex
	seen []*seenAttempt
}

type seenAttempt struct {
	path  string
	a     transport.Attempt
	body  string
	at    time.Time
	ended time.Time
	cause error // the context's cause when the attempt was cancelled
	resp  *trackedBody
	ctx   context.Context
}

func (s *slowStub) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		body = string(b)
	}
	s.mu.Lock()
	sa := &seenAttempt{path: req.URL.Path, a: transport.AttemptFrom(req.Context()), body: body, at: time.Now(), ctx: req.Context()}
	i := len(s.seen)
	s.seen = append(s.seen, sa)
	d, code := s.answer(req, i) // under the lock: scripts may keep state
	s.mu.Unlock()
	var wait <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		wait = timer.C
	}
	select {
	case <-wait:
	case <-req.Context().Done():
		s.mu.Lock()
		sa.ended, sa.cause = time.Now(), context.Cause(req.Context())
		s.mu.Unlock()
		return nil, context.Cause(req.Context()) // as net/http does
	}
	resp := response(req, code, "from attempt "+itoa(i+1))
	s.mu.Lock()
	sa.ended, sa.resp = time.Now(), resp.Body.(*trackedBody)
	s.mu.Unlock()
	return resp, nil
}

func (s *slowStub) attempts() []seenAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]seenAttempt, len(s.seen))
	for i, a := range s.seen {
		out[i] = *a
	}
	return out
}

func reqTo(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://api.test"+path, nil)
	require.NoError(t, err)
	return req
}

// readAll reads and closes resp's body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

// A first attempt that has not answered after the fixed hedge delay is
// joined by a hedge, exactly then; the hedge's answer is the call's, the
// slow attempt is cancelled one more delay later, and the events say so.
func TestHedgeFixedDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if i == 0 {
				return time.Second, 200
			}
			return 3 * time.Millisecond, 200
		}}
		var events recorder
		rt := transport.New(stub, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}, Observer: &events})
		start := time.Now()
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		assert.Equal(t, 13*time.Millisecond, time.Since(start), "the hedge is sent at 10 ms and answers 3 ms later")
		settle()
		assert.NoError(t, stub.attempts()[1].ctx.Err(), "the winner's context lives on after the losers' grace")
		assert.Equal(t, "from attempt 2", readAll(t, resp))
		assert.Error(t, stub.attempts()[1].ctx.Err(), "and ends when its body is closed")
		n, stop, ok := transport.Outcome(resp)
		assert.True(t, ok)
		assert.Equal(t, 2, n, "two attempts were sent")
		assert.NoError(t, stop)
		assert.Equal(t, []string{"attempt 1", "hedge 2"}, events.kinds())
		assert.Equal(t, 10*time.Millisecond, events.events()[1].Delay)

		settle()
		seen := stub.attempts()
		require.Len(t, seen, 2)
		assert.False(t, seen[0].a.Hedge)
		assert.True(t, seen[1].a.Hedge)
		assert.Equal(t, 2, seen[1].a.N)
		assert.True(t, seen[1].a.Retry(), "a hedge is paid as a retry")
		assert.Equal(t, 10*time.Millisecond, seen[1].at.Sub(seen[0].at))
		assert.Equal(t, 23*time.Millisecond, seen[0].ended.Sub(seen[0].at), "the loser is cancelled one hedge delay after the race ended")
		require.Error(t, seen[0].cause)
		assert.NotErrorIs(t, seen[0].cause, classify.ErrAttemptTimeout)
	})
}

// A fast first attempt is never hedged, and a request that is not safe
// to repeat never is either.
func TestHedgeOnlyWhenSlowAndSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if req.URL.Path == "/fast" {
				return 9 * time.Millisecond, 200
			}
			return 50 * time.Millisecond, 200
		}}
		rt := transport.New(stub, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond, MaxHedges: 3}})
		resp, err := rt.RoundTrip(reqTo(t, "/fast"))
		require.NoError(t, err)
		readAll(t, resp)
		post, err := http.NewRequest(http.MethodPost, "http://api.test/post", strings.NewReader("payload"))
		require.NoError(t, err)
		resp, err = rt.RoundTrip(post)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Len(t, stub.attempts(), 2)
	})
}

// Hedges follow one another every delay up to MaxHedges, and never beyond
// the call's attempts; each sends the whole body.
func TestHedgeMaxHedgesAndBodies(t *testing.T) {
	for name, c := range map[string]struct {
		maxHedges, maxAttempts, want int
		getBody                      bool
	}{
		"three hedges":           {3, 10, 4, false},
		"attempts bound hedges":  {3, 2, 2, true},
		"GetBody":                {2, 10, 3, true},
		"one hedge, the default": {0, 10, 2, false},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) { return time.Second, 200 }}
				rt := transport.New(stub, transport.Config{MaxAttempts: c.maxAttempts, Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond, MaxHedges: c.maxHedges}})
				var body io.Reader = strings.NewReader("payload")
				if !c.getBody {
					body = io.MultiReader(body) // no GetBody: the loop records it
				}
				req, err := http.NewRequest(http.MethodPut, "http://api.test/put", body)
				require.NoError(t, err)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				assert.Equal(t, "from attempt 1", readAll(t, resp), "the first answer wins")
				settle()
				seen := stub.attempts()
				require.Len(t, seen, c.want)
				for i, a := range seen {
					assert.Equal(t, "payload", a.body, "attempt %d", i+1)
					assert.Equal(t, time.Duration(i)*10*time.Millisecond, a.at.Sub(seen[0].at), "attempt %d", i+1)
				}
			})
		})
	}
}

// The delay is learned: no hedge until the host has MinSamples attempts,
// then the Quantile of their latency, read from the histogram (the upper
// bound of the bucket holding it, at most 12.5 % above).
func TestHedgeLearnedDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := 0
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			switch {
			case transport.AttemptFrom(req.Context()).Hedge:
				return time.Millisecond, 200
			case req.URL.Path == "/slow":
				return time.Second, 200
			}
			// Half at 1 ms, 40 % at 2 ms, 10 % at 8 ms.
			k++
			switch (k - 1) % 10 {
			case 0, 1, 2, 3, 4:
				return time.Millisecond, 200
			case 9:
				return 8 * time.Millisecond, 200
			}
			return 2 * time.Millisecond, 200
		}}
		var events recorder
		rt := transport.New(stub, transport.Config{Observer: &events, Hedge: &transport.HedgeConfig{MinSamples: 20, Quantile: 0.8}})
		call := func(path string) {
			resp, err := rt.RoundTrip(reqTo(t, path))
			require.NoError(t, err)
			readAll(t, resp)
		}
		for range 20 {
			call("/warm")
		}
		assert.NotContains(t, events.kinds(), "hedge 2", "under 20 samples nothing is hedged, not even the 8 ms attempts")
		for range 20 {
			call("/warm")
		}
		// The 0.8 quantile is in the bucket of 2 ms, [1.835, 2.097) ms;
		// the 8 ms attempts are hedged then.
		hedges := 0
		for _, e := range events.events() {
			if e.Kind == transport.EventHedge {
				hedges++
				assert.Equal(t, 2097152*time.Nanosecond, e.Delay)
			}
		}
		assert.Equal(t, 2, hedges, "the two 8 ms attempts after the 20th")
		call("/slow")
		evs := events.events()
		last := evs[len(evs)-1]
		assert.Equal(t, transport.EventHedge, last.Kind)
		assert.Equal(t, 2097152*time.Nanosecond, last.Delay)
		settle()
	})
}

// The floor and the cap bound a learned delay.
func TestHedgeLearnedDelayBounds(t *testing.T) {
	for name, c := range map[string]struct {
		latency, min, max, want time.Duration
	}{
		"floor": {100 * time.Microsecond, 5 * time.Millisecond, time.Second, 5 * time.Millisecond},
		"cap":   {300 * time.Millisecond, time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				first := true
				stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
					if req.URL.Path == "/slow" && first {
						first = false
						return 10 * time.Second, 200
					}
					return c.latency, 200
				}}
				var events recorder
				rt := transport.New(stub, transport.Config{Observer: &events, Hedge: &transport.HedgeConfig{MinSamples: 16, MinDelay: c.min, MaxDelay: c.max}})
				for range 16 {
					resp, err := rt.RoundTrip(reqTo(t, "/warm"))
					require.NoError(t, err)
					readAll(t, resp)
				}
				resp, err := rt.RoundTrip(reqTo(t, "/slow"))
				require.NoError(t, err)
				readAll(t, resp)
				evs := events.events()
				require.Equal(t, transport.EventHedge, evs[len(evs)-1].Kind)
				assert.Equal(t, c.want, evs[len(evs)-1].Delay)
				settle()
			})
		})
	}
}

// A loser that answers within the grace (one more hedge delay) has its
// response drained and closed; a hedge that fails retryably while the
// first attempt still waits does not end the race.
func TestHedgeLosersClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			switch i {
			case 0:
				return 40 * time.Millisecond, 200 // answers 5 ms after the race ends, within the grace
			case 1:
				return time.Millisecond, 503 // fails at once: the race goes on
			}
			return 15 * time.Millisecond, 200 // wins at 25 ms
		}}
		rt := transport.New(stub, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond, MaxHedges: 2}})
		start := time.Now()
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		assert.Equal(t, 35*time.Millisecond, time.Since(start))
		assert.Equal(t, "from attempt 3", readAll(t, resp))
		settle()
		seen := stub.attempts()
		require.Len(t, seen, 3)
		require.NotNil(t, seen[0].resp, "the loser answered within the grace")
		assert.True(t, seen[0].resp.isClosed(), "and its response was closed")
		require.NotNil(t, seen[1].resp)
		assert.True(t, seen[1].resp.isClosed(), "the 503 was closed")
	})
}

// When every attempt of the race fails retryably, the loop retries after
// its backoff, numbering on from the hedges.
func TestHedgeAllFailThenRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if i < 2 {
				return 20 * time.Millisecond, 503
			}
			return time.Millisecond, 200
		}}
		var events recorder
		rt := transport.New(stub, transport.Config{Observer: &events, BaseDelay: -1, Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}})
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		assert.Equal(t, "from attempt 3", readAll(t, resp))
		assert.Equal(t, []string{"attempt 1", "hedge 2", "retry 2", "attempt 3"}, events.kinds())
		n, _, _ := transport.Outcome(resp)
		assert.Equal(t, 3, n)
	})
}

// Hedges are paid from the retry budget: with a budget of 10 % of first
// attempts and no floor, at most a tenth of the calls (plus the budget's
// starting allowance) are hedged, although every call is slow enough to be.
func TestHedgeBudgetShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) { return 20 * time.Millisecond, 200 }}
		var refused int
		var mu sync.Mutex
		gate := budget.NewTransport(stub, budget.Config{
			Ratio:    budget.RatioConfig{Ratio: 0.1, MinPerSecond: -1},
			OnRefuse: func(budget.Refusal) { mu.Lock(); refused++; mu.Unlock() },
		})
		rt := transport.New(gate, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}})
		const calls = 200
		for range calls {
			resp, err := rt.RoundTrip(reqTo(t, "/x"))
			require.NoError(t, err)
			readAll(t, resp)
		}
		settle()
		hedges := 0
		for _, a := range stub.attempts() {
			if a.a.Hedge {
				hedges++
			}
		}
		t.Logf("%d hedges sent, %d refused, for %d calls", hedges, refused, calls)
		assert.Positive(t, hedges)
		assert.LessOrEqual(t, hedges, calls/10+1, "the budget's share")
		assert.Equal(t, calls, hedges+refused, "every call tried one hedge")
	})
}

// No hedge goes to a host whose circuit opened while the first attempt
// waited, nor to a host held by a server's wait hint: the call gets its
// first attempt's answer.
func TestNoHedgeTowardOpenOrHeldHost(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
				if req.URL.Path == "/slow" {
					return 100 * time.Millisecond, 200
				}
				return 0, 500
			}}
			br := breaker.NewTransport(stub, breaker.Config{})
			rt := transport.New(br, transport.Config{Hedge: &transport.HedgeConfig{Delay: 50 * time.Millisecond}})
			done := make(chan string)
			go func() {
				resp, err := rt.RoundTrip(reqTo(t, "/slow"))
				if err != nil {
					done <- err.Error()
					return
				}
				done <- readAll(t, resp)
			}()
			synctest.Wait()
			for range 20 {
				resp, err := rt.RoundTrip(reqTo(t, "/fail").WithContext(transport.NoRetry(context.Background())))
				if err == nil {
					resp.Body.Close()
				}
			}
			require.Equal(t, "open", br.Snapshot()[0].State.String())
			assert.Equal(t, "from attempt 1", <-done)
			for _, a := range stub.attempts() {
				assert.False(t, a.a.Hedge, "no hedge reached the host")
			}
		})
	})
	t.Run("held", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
				if req.URL.Path == "/slow" {
					return 100 * time.Millisecond, 200
				}
				return 0, 503
			}}
			hinted := func(rt http.RoundTripper) http.RoundTripper {
				return rtFunc(func(req *http.Request) (*http.Response, error) {
					resp, err := rt.RoundTrip(req)
					if err == nil && resp.StatusCode == 503 {
						resp.Header.Set("Retry-After", "5")
					}
					return resp, err
				})
			}
			rt := transport.New(hinted(stub), transport.Config{MaxAttempts: 2, Hedge: &transport.HedgeConfig{Delay: 50 * time.Millisecond}})
			done := make(chan string)
			go func() {
				resp, err := rt.RoundTrip(reqTo(t, "/slow"))
				if err != nil {
					done <- err.Error()
					return
				}
				done <- readAll(t, resp)
			}()
			synctest.Wait()
			// Another call's 503 + Retry-After holds the host for 5 s.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := rt.RoundTrip(reqTo(t, "/hint").WithContext(ctx))
			cancel()
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, "from attempt 1", <-done)
			for _, a := range stub.attempts() {
				assert.False(t, a.a.Hedge, "no hedge reached the held host")
			}
		})
	})
}

// Nor does a hedge go to a host paced by its quota headers, or limited by
// its adaptive rate after throttling: it would spend the quota or the
// turns they spread.
func TestNoHedgeTowardPacedHost(t *testing.T) {
	for name, c := range map[string]struct {
		adaptive bool
		first    func(resp *http.Response)
	}{
		"quota headers": {first: func(resp *http.Response) {
			resp.Header.Set("RateLimit-Remaining", "1000")
			resp.Header.Set("RateLimit-Reset", "60")
		}},
		"adaptive rate after a 429": {adaptive: true, first: func(resp *http.Response) {
			resp.StatusCode = http.StatusTooManyRequests
		}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
					if req.URL.Path == "/slow" {
						return 100 * time.Millisecond, 200
					}
					return 0, 200
				}}
				base := rtFunc(func(req *http.Request) (*http.Response, error) {
					resp, err := stub.RoundTrip(req)
					if err == nil && req.URL.Path == "/first" {
						c.first(resp)
					}
					return resp, err
				})
				rt := transport.New(base, transport.Config{MaxAttempts: 1, AdaptiveRate: c.adaptive, Hedge: &transport.HedgeConfig{Delay: 50 * time.Millisecond}})
				resp, err := rt.RoundTrip(reqTo(t, "/first"))
				require.NoError(t, err)
				readAll(t, resp)
				time.Sleep(time.Second)
				resp, err = rt.RoundTrip(reqTo(t, "/slow").WithContext(transport.WithAttempts(context.Background(), 4)))
				require.NoError(t, err)
				assert.Equal(t, "from attempt 2", readAll(t, resp))
				for _, a := range stub.attempts() {
					assert.False(t, a.a.Hedge, "no hedge reached the host")
				}
				settle()
			})
		})
	}
}

// A cancelled loser is neutral to the breaker: a host whose every slow
// first attempt loses to a hedge never trips.
func TestHedgeLosersNeutralToBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if transport.AttemptFrom(req.Context()).Hedge {
				return time.Millisecond, 200
			}
			return -1, 0 // the first attempt never answers
		}}
		br := breaker.NewTransport(stub, breaker.Config{})
		rt := transport.New(br, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}})
		for range 50 {
			resp, err := rt.RoundTrip(reqTo(t, "/x"))
			require.NoError(t, err)
			readAll(t, resp)
		}
		settle()
		st := br.Snapshot()[0]
		assert.Equal(t, "closed", st.State.String())
		assert.Zero(t, st.Trips)
		assert.Negative(t, st.Evidence, "the hedges' successes earned credit; no loser counted as a failure")
	})
}

// settle lets a bubble's losers go: every grace ends, every attempt
// returns.
func settle() {
	time.Sleep(time.Minute)
	synctest.Wait()
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// The caller's cancellation during a race ends every attempt: the call
// returns the cancellation, and nothing is left running (synctest fails a
// bubble whose goroutines outlive it).
func TestHedgeRaceCancelledByCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) { return -1, 0 }}
		rt := transport.New(stub, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond, MaxHedges: 2}})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := rt.RoundTrip(reqTo(t, "/x").WithContext(ctx))
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		var te *transport.Error
		require.ErrorAs(t, err, &te)
		assert.Equal(t, 3, te.Attempts, "the first attempt and two hedges were sent")
		synctest.Wait()
		for _, a := range stub.attempts() {
			assert.False(t, a.ended.IsZero(), "attempt %d ended", a.a.N)
		}
	})
}

// A Decide hook judges every attempt of the race that answers before the
// winner, on the call's goroutine: a 200 it calls retryable does not win.
func TestHedgeDecideJudgesRacers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if i == 0 {
				return 30 * time.Millisecond, 200
			}
			return 5 * time.Millisecond, 200 // answers first, at 15 ms, but "pending"
		}}
		var judged []int
		rt := transport.New(stub, transport.Config{
			Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond},
			Decide: func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
				a := transport.AttemptFrom(req.Context())
				judged = append(judged, a.N)
				if a.Hedge {
					return classify.Verdict{Outcome: classify.Retryable, Reason: "pending"}
				}
				return def
			},
		})
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		assert.Equal(t, "from attempt 1", readAll(t, resp))
		assert.Equal(t, []int{2, 1}, judged)
		settle()
	})
}

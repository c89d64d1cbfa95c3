package admission

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/classify"
)

func ok(req *http.Request) *http.Response { return answer(req, 200) }

func TestHealthyKeyHasNoStateAndAllocatesNothing(t *testing.T) {
	a := New(Config{})
	req := get(t, context.Background(), "api.test", "k")
	resp := answer(req, 200)
	allocs := testing.AllocsPerRun(1000, func() {
		turn, wait, err := a.Take(req)
		if err != nil || wait != 0 {
			t.Fatal(err, wait)
		}
		turn.Done(resp, nil)
	})
	assert.Zero(t, allocs)
	assert.Zero(t, a.states.Load(), "a healthy host leaves no state")
	assert.False(t, a.Busy(req))
}

func TestNilAdmissionAdmitsEverything(t *testing.T) {
	var a *Admission
	turn, wait, err := a.Take(get(t, context.Background(), "api.test", ""))
	require.NoError(t, err)
	assert.Zero(t, wait)
	turn.Done(nil, errors.New("boom"))
	turn.Cancel()
	assert.False(t, a.Busy(get(t, context.Background(), "api.test", "")))
	var zero Turn
	zero.Done(nil, nil)
	zero.Cancel()
	require.NoError(t, zero.Wait(context.Background()))
}

// A throttle with a hint while nothing was admitted pauses the key: the
// next call waits for the hint (plus a spread of at most a tenth of it),
// and one whose deadline ends first is refused at once, unsent, naming
// the hint.
func TestHintPausesKeyWhenNothingAdmitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		start := time.Now()
		// One throttle delays only its own call.
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 503, "Retry-After", "5")
		})
		require.NoError(t, err)
		// The next attempts are given by the key's new state; their
		// throttles, with nothing admitted, pause the key at the
		// pauseEvidence-th.
		for range pauseEvidence - 1 {
			_, err = send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
				return answer(r, 503, "Retry-After", "5")
			})
			require.NoError(t, err)
		}
		assert.Zero(t, time.Since(start), "no attempt was held by the throttles before")
		var wait time.Duration
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, wait, err = a.Take(get(t, ctx, "api.test", ""))
		var re *RefusedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, "api.test", re.Host)
		assert.Equal(t, LimitHint, re.Limit)
		assert.ErrorIs(t, err, ErrHint)
		assert.ErrorIs(t, err, ErrNotAdmitted)
		assert.ErrorIs(t, err, classify.ErrNotSent)
		assert.NotErrorIs(t, err, ErrQuota)
		assert.Zero(t, wait)
		assert.Zero(t, time.Since(start), "refused at once")
		assert.Equal(t, "admission: api.test paused by the server's wait hint: no turn before the call's deadline (the server asked for a pause; retry after it)", err.Error())

		at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, at.Sub(start), 5*time.Second, "never before the hint")
		assert.LessOrEqual(t, at.Sub(start), 5500*time.Millisecond, "within the spread")
	})
}

// A burst refused just after the host admitted calls pauses nothing and
// paces nothing: the key's state begins at its first throttle, so what
// the host admitted before is not in it, and two refusals with a hint
// (open-loop arrivals under a token bucket's rate meet them at random)
// used to pause every call of the key for the hint.
func TestBurstRefusedAfterAdmittedCallsDelaysNoOtherCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		for range 5 {
			_, err := send(a, get(t, t.Context(), "api.test", ""), ok)
			require.NoError(t, err)
		}
		for range 2 {
			_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
				return answer(r, 429, "Retry-After", "1")
			})
			require.NoError(t, err)
		}
		for range 5 {
			_, wait, err := a.Take(get(t, t.Context(), "api.test", ""))
			require.NoError(t, err)
			assert.Zero(t, wait, "a call the server would admit waits for no one")
		}
	})
}

// A hint over MaxWait pauses nothing: the call that got it gives up on its
// own, other calls are not stalled by a hostile header.
func TestHintOverMaxWaitPausesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{MaxWait: 10 * time.Second})
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 429, "Retry-After", "3600")
		})
		require.NoError(t, err)
		_, wait, err := a.Take(get(t, t.Context(), "api.test", ""))
		require.NoError(t, err)
		assert.Zero(t, wait)
	})
}

// A limiter refusing the excess while it admits others lowers the key's
// pace; it does not pause the key.
func TestLimiterRefusingExcessPacesInsteadOfPausing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		// Start a state: one throttle, then responses admitted at 100/s.
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 429)
		})
		require.NoError(t, err)
		for i := range 100 {
			time.Sleep(10 * time.Millisecond)
			_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
				if i%3 == 0 {
					return answer(r, 429) // a third refused: worth a pace
				}
				return answer(r, 200)
			})
			require.NoError(t, err)
		}
		r := get(t, t.Context(), "api.test", "")
		turn, _, err := a.Take(r)
		require.NoError(t, err)
		turn.Done(answer(r, 503, "Retry-After", "1"), nil)
		a.mu.Lock()
		st := a.hosts["api.test"].creds[0]
		p, _ := st.pause()
		rate := st.rate
		a.mu.Unlock()
		assert.False(t, p.After(time.Now()), "not paused: others are admitted")
		assert.Greater(t, rate, 0.0, "paced")
		assert.True(t, a.Busy(get(t, t.Context(), "api.test", "")))
	})
}

// Calls go in the order they asked, and a call arriving while a queue
// drains waits behind it.
func TestQueueIsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		pause(t, a, func() *http.Request { return get(t, t.Context(), "api.test", "") }, 429, "Retry-After", "2")
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := range 60 {
			time.Sleep(10 * time.Millisecond) // asked 10 ms apart, the last ones while the queue drains
			wg.Go(func() {
				_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					return answer(r, 200)
				})
				assert.NoError(t, err)
			})
			synctest.Wait()
		}
		wg.Wait()
		require.Len(t, order, 60)
		for i, v := range order {
			assert.Equal(t, i, v, "turn %d went to call %d", i, v)
		}
	})
}

// After a pause the queue goes at the rate the key was admitting before
// it, never all at once and never slower.
func TestReleaseAtTheAdmittedRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		// A state, then 3 s admitted at 20/s, then a second of silence.
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response { return answer(r, 429) })
		require.NoError(t, err)
		time.Sleep(2 * time.Second) // the cut's pace no longer binds
		for range 60 {
			time.Sleep(50 * time.Millisecond)
			_, err := send(a, get(t, t.Context(), "api.test", ""), ok)
			require.NoError(t, err)
		}
		time.Sleep(1100 * time.Millisecond)
		// The server says it is unavailable for 2 s.
		_, err = send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 503, "Retry-After", "2")
		})
		require.NoError(t, err)
		var (
			mu    sync.Mutex
			times []time.Time
			wg    sync.WaitGroup
		)
		for range 40 {
			wg.Go(func() {
				at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
				assert.NoError(t, err)
				mu.Lock()
				times = append(times, at)
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Len(t, times, 40)
		first, last := times[0], times[0]
		for _, at := range times {
			first, last = minTime(first, at), maxTime(last, at)
		}
		span := last.Sub(first)
		// 40 calls at 20/s: 39 intervals of 50 ms, within the pace's
		// growth of a few percent.
		assert.GreaterOrEqual(t, span, 1500*time.Millisecond, "not all at once")
		assert.LessOrEqual(t, span, 2000*time.Millisecond, "not slower than the admitted rate")
	})
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// A call whose turn fits its deadline waits and goes; one whose turn, queue
// position included, does not is refused at once.
func TestDeadlinesJudgedWithTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		pause(t, a, func() *http.Request { return get(t, t.Context(), "api.test", "") }, 429, "Retry-After", "1")
		// Ten calls queue behind the pause; the eleventh's turn is the
		// pause's end plus ten turns of the release pace.
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				_, err := send(a, get(t, t.Context(), "api.test", ""), ok)
				assert.NoError(t, err)
			})
		}
		synctest.Wait()
		a.mu.Lock()
		st := a.hosts["api.test"].creds[0]
		end, _ := st.pause()
		iv, _ := st.interval(time.Now())
		queued := len(st.queue)
		a.mu.Unlock()
		require.Equal(t, 10, queued)
		require.Positive(t, iv, "the release is paced")
		turn := end.Add(10 * iv)
		start := time.Now()
		ctx, cancel := context.WithDeadline(t.Context(), turn.Add(-iv/2))
		defer cancel()
		_, _, err := a.Take(get(t, ctx, "api.test", ""))
		assert.ErrorIs(t, err, ErrHint, "eleventh in line: its turn is after its deadline")
		assert.Zero(t, time.Since(start), "refused at once")
		ctx2, cancel2 := context.WithDeadline(t.Context(), turn.Add(iv/2))
		defer cancel2()
		at, err := send(a, get(t, ctx2, "api.test", ""), ok)
		require.NoError(t, err, "a deadline the queue fits")
		assert.False(t, at.Before(end), "not before the pause's end")
		wg.Wait()
	})
}

// A 429 and a quota belong to the caller's credential; a 5xx's hint to
// the whole host.
func TestTenantsAreSeparateButAHostPauseIsShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		pause(t, a, func() *http.Request { return get(t, t.Context(), "api.test", "alice") }, 429, "Retry-After", "30")
		_, wait, err := a.Take(get(t, t.Context(), "api.test", "bob"))
		require.NoError(t, err)
		assert.Zero(t, wait, "bob is not slowed by alice's 429")
		_, wait, err = a.Take(get(t, t.Context(), "api.test", "alice"))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, wait, 30*time.Second, "alice waits for her hint")
	})
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		pause(t, a, func() *http.Request { return get(t, t.Context(), "api.test", "alice") }, 503, "Retry-After", "30")
		_, wait, err := a.Take(get(t, t.Context(), "api.test", "bob"))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, wait, 30*time.Second, "the host said it is unavailable")
		_, wait, err = a.Take(get(t, t.Context(), "other.test", "alice"))
		require.NoError(t, err)
		assert.Zero(t, wait, "another host is not paused")
	})
}

// A Key function chooses the partition.
func TestKeyFunction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{Key: func(r *http.Request) string { return r.Header.Get("X-Tenant") }})
		pause(t, a, func() *http.Request {
			r := get(t, t.Context(), "api.test", "one")
			r.Header.Set("X-Tenant", "t1")
			return r
		}, 429, "Retry-After", "30")
		r2 := get(t, t.Context(), "api.test", "two") // another credential, same tenant
		r2.Header.Set("X-Tenant", "t1")
		_, wait, err := a.Take(r2)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, wait, 30*time.Second)
	})
}

// An announced quota paces the key: what is left over the time left, a
// tenth of it at once; a quota of zero pauses the key until its reset.
func TestQuotaPacesTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 200, "RateLimit", `"default";r=20;t=2`, "RateLimit-Policy", `"default";q=100;w=2`)
		})
		require.NoError(t, err)
		start := time.Now()
		var last time.Time
		for range 20 {
			at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
			require.NoError(t, err)
			last = at
		}
		// 20 left over 2 s: 10/s, 2 at once: the 20th goes after 1.8 s.
		assert.InDelta(t, 1800*time.Millisecond, last.Sub(start), float64(50*time.Millisecond))
	})
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 200, "RateLimit", `"default";r=0;t=5`)
		})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, _, err = a.Take(get(t, ctx, "api.test", ""))
		assert.ErrorIs(t, err, ErrQuota)
		assert.Equal(t, LimitQuota, LimitOf(err))
		start := time.Now()
		at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
		require.NoError(t, err)
		assert.Equal(t, 5*time.Second, at.Sub(start).Round(time.Second))
	})
}

// A cancelled wait and a turn given back move the next waiter up at once.
func TestTurnsGivenBackMoveTheQueueUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		// A quota of 1/s, no burst.
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 200, "RateLimit", `"default";r=10;t=10`)
		})
		require.NoError(t, err)
		first, wait, err := a.Take(get(t, t.Context(), "api.test", ""))
		require.NoError(t, err)
		require.Zero(t, wait)
		start := time.Now()
		first.Cancel() // a gate below refused it
		at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
		require.NoError(t, err)
		assert.Zero(t, at.Sub(start), "the turn given back is the next call's")

		ctx, cancel := context.WithCancel(t.Context())
		queued, wait, err := a.Take(get(t, ctx, "api.test", ""))
		require.NoError(t, err)
		require.Positive(t, wait)
		done := make(chan error)
		go func() { done <- queued.Wait(ctx) }()
		synctest.Wait()
		behind := make(chan time.Time)
		go func() {
			at, _ := send(a, get(t, t.Context(), "api.test", ""), ok)
			behind <- at
		}()
		synctest.Wait()
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		at = <-behind
		assert.Equal(t, time.Second, at.Sub(start).Round(100*time.Millisecond), "the second call took the cancelled one's place")
	})
}

// A gate's refusal (an error matching classify.ErrNotSent) gives the turn
// back, as Cancel does.
func TestDoneWithNotSentGivesTheTurnBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		_, err := send(a, get(t, t.Context(), "api.test", ""), func(r *http.Request) *http.Response {
			return answer(r, 200, "RateLimit", `"default";r=10;t=10`)
		})
		require.NoError(t, err)
		turn, _, err := a.Take(get(t, t.Context(), "api.test", ""))
		require.NoError(t, err)
		turn.Done(nil, &classify.NotSentError{Msg: "budget: exhausted"})
		start := time.Now()
		at, err := send(a, get(t, t.Context(), "api.test", ""), ok)
		require.NoError(t, err)
		assert.Zero(t, at.Sub(start))
		q, in, _ := a.idleForTest()
		assert.Zero(t, q)
		assert.Zero(t, in)
	})
}

// The table is bounded: a full table evicts its idlest state, a busy state
// is never evicted, idle states expire, and a host seen after eviction
// starts fresh.
func TestTableIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{MaxKeys: 3})
		throttle := func(host string) {
			t.Helper()
			_, err := send(a, get(t, t.Context(), host, ""), func(r *http.Request) *http.Response { return answer(r, 429) })
			require.NoError(t, err)
		}
		for _, h := range []string{"a.test", "b.test", "c.test"} {
			throttle(h)
			time.Sleep(time.Second)
		}
		throttle("d.test") // evicts a.test, the idlest
		_, _, states := a.idleForTest()
		assert.Equal(t, 3, states)
		a.mu.Lock()
		_, hasA := a.hosts["a.test"]
		_, hasD := a.hosts["d.test"]
		a.mu.Unlock()
		assert.False(t, hasA)
		assert.True(t, hasD)
		time.Sleep(2 * idleAfter)
		throttle("e.test") // the sweep drops the idle ones
		_, _, states = a.idleForTest()
		assert.Equal(t, 1, states)
	})
}

// TryTake gives a turn only when one is free now: it never queues, and a
// refused try leaves the key's demand and queue as they were.
func TestTryTakeNeverQueues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		turn, ok := a.TryTake(get(t, t.Context(), "api.test", ""))
		require.True(t, ok, "no state: free")
		turn.Done(answer(turn.req, 200), nil)
		pause(t, a, func() *http.Request { return get(t, t.Context(), "api.test", "") }, 429, "Retry-After", "5")
		a.mu.Lock()
		st := a.hosts["api.test"].creds[0]
		asked := st.cur.asked + st.prev.asked
		a.mu.Unlock()
		_, ok = a.TryTake(get(t, t.Context(), "api.test", ""))
		assert.False(t, ok, "paused: no turn")
		a.mu.Lock()
		assert.Equal(t, asked, st.cur.asked+st.prev.asked, "a refused try is not an ask")
		assert.Empty(t, st.queue)
		a.mu.Unlock()
		time.Sleep(6 * time.Second)
		turn, ok = a.TryTake(get(t, t.Context(), "api.test", ""))
		require.True(t, ok, "the pause is over")
		turn.Done(answer(turn.req, 200), nil)
		q, in, _ := a.idleForTest()
		assert.Zero(t, q)
		assert.Zero(t, in)
	})
}

package transport_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shiftRun is what one run of the breaker-and-learned-timeout scenario saw.
type shiftRun struct {
	trips     int           // breaker trips
	firstTrip time.Duration // from the shift to the first trip; 0 when none
	refused   int           // calls the breaker refused, unsent
	after     int           // calls started from 2 s after the shift
	afterOK   int           // ... that succeeded
}

// runShiftWithBreaker drives 20 workers, deadlines of 450 ms, through the
// retry loop with default learned timeouts in front of a default breaker,
// against a host that answers in 5 to 15 ms for 3 s and then as slow says (a
// negative slow: never, a black hole), for 5 s more.
func runShiftWithBreaker(t *testing.T, workers int, slow time.Duration, hedge *transport.HedgeConfig) shiftRun {
	var run shiftRun
	var mu sync.Mutex
	shifted := false
	var shiftAt time.Time
	stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
		if shifted {
			return slow, 200
		}
		return time.Duration(5+i*7%11) * time.Millisecond, 200 // 5 to 15 ms, 10 on average
	}}
	br := breaker.NewTransport(stub, breaker.Config{OnStateChange: func(ch breaker.StateChange) {
		if ch.To == breaker.Open {
			mu.Lock()
			if run.trips == 0 {
				run.firstTrip = time.Since(shiftAt)
			}
			run.trips++
			mu.Unlock()
		}
	}})
	rt := transport.New(br, transport.Config{LearnedTimeout: &transport.LearnedTimeoutConfig{}, Hedge: hedge})
	type call struct {
		start   time.Time
		ok      bool
		refused bool
	}
	var calls []call
	end := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			time.Sleep(time.Duration(w) * time.Millisecond / 2) // callers out of step
			for time.Now().Before(end) {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond)
				resp, err := rt.RoundTrip(reqTo(t, "/x").WithContext(ctx))
				if err == nil {
					readAll(t, resp)
				}
				cancel()
				mu.Lock()
				calls = append(calls, call{start, err == nil, errors.Is(err, classify.ErrNotSent)})
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // a failed caller does not spin
				}
			}
		})
	}
	time.Sleep(3 * time.Second)
	stub.mu.Lock()
	shifted, shiftAt = true, time.Now()
	stub.mu.Unlock()
	wg.Wait()
	settle()
	for _, c := range calls {
		if c.refused {
			run.refused++
		}
		if !c.start.Before(shiftAt.Add(2 * time.Second)) {
			run.after++
			if c.ok {
				run.afterOK++
			}
		}
	}
	return run
}

// A host that became slower for a good reason (10 ms → 300 ms, callers'
// deadlines 450 ms) must not trip its breaker because rebound's own
// learned timeout cut its attempts: the calls in flight at the shift lose
// their first attempt to the old timeout (200 ms), and their retries,
// with what is left of the deadline, are ended by it. The deadline is the
// caller's, but the time it left the retry was cut short by a guess.
// (Before attempts after a learned cut were excused, about 20 such
// retries in a row tripped the breaker, which refused every call for a
// second: 2,400 calls in the real-loopback test.)
func TestLearnedTimeoutShiftDoesNotTripBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := runShiftWithBreaker(t, 40, 300*time.Millisecond, nil)
		t.Logf("trips %d, refused %d, from 2 s after the shift %d of %d calls ok", run.trips, run.refused, run.afterOK, run.after)
		assert.Zero(t, run.trips, "a slower host's breaker never opens")
		assert.Zero(t, run.refused, "no call refused unsent")
		require.Positive(t, run.after)
		assert.GreaterOrEqual(t, float64(run.afterOK), 0.95*float64(run.after))
	})
}

// The excuse does not hide a host that stops answering: its attempts are
// cut by the learned timeout (neutral) and their retries end at the
// deadline (excused) until the censored streak suspends the learned
// timeout; then first attempts wait out the caller's deadline uncut, and
// those count. The breaker trips within a second of the host going dark
// (a deadline for the streak, one for the uncut attempts, and a little).
func TestLearnedTimeoutBlackHoleStillTripsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := runShiftWithBreaker(t, 40, -1, nil)
		t.Logf("trips %d, first %v after the host went dark, refused %d", run.trips, run.firstTrip, run.refused)
		require.Positive(t, run.trips, "a black-holed host trips its breaker")
		assert.LessOrEqual(t, run.firstTrip, time.Second)
		assert.Positive(t, run.refused)
	})
}

// The same shift with hedging on: a hedge of a retry that follows a
// learned cut carries the retry's mark. (Without the retries' marks, 1
// trip and 5,200 calls refused; with them but not the hedges', 1 trip and
// 5,200 to 5,500 refused in each of 3 runs.)
func TestLearnedTimeoutShiftWithHedgesDoesNotTripBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := runShiftWithBreaker(t, 40, 300*time.Millisecond, &transport.HedgeConfig{})
		t.Logf("trips %d, refused %d, from 2 s after the shift %d of %d calls ok", run.trips, run.refused, run.afterOK, run.after)
		assert.Zero(t, run.trips, "a slower host's breaker never opens")
		assert.Zero(t, run.refused, "no call refused unsent")
		require.Positive(t, run.after)
		assert.GreaterOrEqual(t, float64(run.afterOK), 0.95*float64(run.after))
	})
}

// A black hole trips the breaker with hedging on too (912 ms after the
// host went dark; 909 ms without hedging).
func TestLearnedTimeoutBlackHoleWithHedgesStillTripsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := runShiftWithBreaker(t, 40, -1, &transport.HedgeConfig{})
		t.Logf("trips %d, first %v after the host went dark, refused %d", run.trips, run.firstTrip, run.refused)
		require.Positive(t, run.trips, "a black-holed host trips its breaker")
		assert.LessOrEqual(t, run.firstTrip, time.Second)
	})
}

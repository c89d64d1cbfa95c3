package admission

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/classify"
)

// TestRandomOperationsReturnToIdle runs 100,000 random operations (take,
// use, refuse at the deadline, cancel while waiting, give back, and every
// kind of response: admitted, hints, throttles without hints, quotas,
// transport errors, a gate's refusal) from 16 goroutines on 3 hosts and 2
// credentials, then checks that every turn was returned: nothing queued,
// nothing in flight, no key paused or paced once its signals have
// expired, and every state dropped once idle.
func TestRandomOperationsReturnToIdle(t *testing.T) {
	const workers, ops = 16, 100_000
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{MaxWait: 5 * time.Second, MaxKeys: 4})
		var done atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				for done.Add(1) <= ops {
					step(t, a, rng)
				}
			})
		}
		wg.Wait()
		q, in, _ := a.idleForTest()
		assert.Zero(t, q, "queued")
		assert.Zero(t, in, "in flight")
		// Every signal has expired by now: no key waits.
		time.Sleep(time.Minute)
		for _, host := range []string{"h0.test", "h1.test", "h2.test"} {
			for _, cred := range []string{"", "c1"} {
				turn, wait, err := a.Take(get(t, t.Context(), host, cred))
				require.NoError(t, err)
				assert.Zero(t, wait, host+" "+cred)
				turn.Cancel()
			}
		}
		time.Sleep(2 * idleAfter)
		r := get(t, t.Context(), "fresh.test", "")
		turn, _, err := a.Take(r)
		require.NoError(t, err)
		turn.Done(answer(r, 200), nil) // runs the sweep
		_, _, states := a.idleForTest()
		assert.Zero(t, states, "idle states expire")
		assert.Zero(t, a.states.Load())
	})
}

// step is one random operation.
func step(t *testing.T, a *Admission, rng *rand.Rand) {
	ctx := context.Background()
	var cancel context.CancelFunc = func() {}
	switch rng.IntN(4) {
	case 0:
		ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Millisecond)
	case 1:
		ctx, cancel = context.WithCancel(ctx)
		d := time.Duration(rng.IntN(500)) * time.Millisecond
		time.AfterFunc(d, cancel)
	}
	defer cancel()
	cred := ""
	if rng.IntN(2) == 0 {
		cred = "c1"
	}
	req := get(t, ctx, "h"+strconv.Itoa(rng.IntN(3))+".test", cred)
	turn, wait, err := a.Take(req)
	if err != nil {
		require.ErrorIs(t, err, ErrNotAdmitted)
		return
	}
	if wait > 0 {
		if rng.IntN(20) == 0 {
			turn.Cancel() // gave up before waiting
			return
		}
		if err := turn.Wait(ctx); err != nil {
			require.ErrorIs(t, err, ctx.Err())
			turn.Done(nil, err) // harmless after the wait ended it
			return
		}
	}
	time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	switch rng.IntN(12) {
	case 0:
		turn.Cancel()
	case 1:
		turn.Done(nil, &classify.NotSentError{Msg: "gate"})
	case 2:
		turn.Done(nil, errors.New("connection reset"))
	case 3:
		turn.Done(answer(req, 429), nil)
	case 4:
		turn.Done(answer(req, 429, "Retry-After", strconv.Itoa(rng.IntN(3))), nil)
	case 5:
		turn.Done(answer(req, 503, "Retry-After", strconv.Itoa(rng.IntN(3))), nil)
	case 6:
		turn.Done(answer(req, 200, "RateLimit", `"q";r=`+strconv.Itoa(rng.IntN(20))+`;t=`+strconv.Itoa(1+rng.IntN(3))), nil)
	case 7:
		turn.Done(answer(req, 429, "Retry-After", "3600"), nil) // over MaxWait
	default:
		turn.Done(answer(req, 200), nil)
	}
	if rng.IntN(3) == 0 {
		turn.Done(answer(req, 200), nil) // a second report is ignored
		turn.Cancel()
	}
	_ = http.StatusOK
}

package transport_test

import (
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A racer's 429 with a wait hint stops the hedging of its call at once:
// with MaxHedges 2 no second hedge follows it, and the hint reaches the
// host's admission even though another racer wins (the next call, while
// the hint lasts, is held).
func TestHedgeRacerHintStopsHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			switch {
			case req.URL.Path != "/x":
				return 200 * time.Millisecond, 200
			case i == 0:
				return 200 * time.Millisecond, 200 // slow, wins
			case i == 1:
				return time.Millisecond, 429 // the hedge is told to wait
			}
			return 5 * time.Millisecond, 200
		}}
		throttle := rtFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := stub.RoundTrip(req)
			if err == nil && resp.StatusCode == 429 {
				resp.Header.Set("Retry-After", "5")
			}
			return resp, err
		})
		rt := transport.New(throttle, transport.Config{Hedge: &transport.HedgeConfig{MaxHedges: 2, Delay: 30 * time.Millisecond}})
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		assert.Equal(t, "from attempt 1", readAll(t, resp))
		time.Sleep(time.Second) // every racer has ended
		synctest.Wait()
		assert.Len(t, stub.attempts(), 2, "no hedge after the racer's 429 asked for 5 s of quiet")

		// The loser's hint was recorded at once, though its call won:
		// the host was throttled a second ago, and the next slow call is
		// not hedged.
		resp, err = rt.RoundTrip(reqTo(t, "/z"))
		require.NoError(t, err)
		readAll(t, resp)
		settle()
		seen := stub.attempts()
		require.Len(t, seen, 3)
		assert.False(t, seen[2].a.Hedge)
	})
}

// EventHedge fires only for a hedge that was sent: a hedge the budget
// refuses is not counted, and the events match what the server saw.
func TestHedgeEventsCountOnlySent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) { return 20 * time.Millisecond, 200 }}
		gate := budget.NewTransport(stub, budget.Config{Ratio: budget.RatioConfig{Ratio: 0.1, MinPerSecond: -1}})
		var mu sync.Mutex
		counts := map[transport.EventKind]int{}
		obs := transport.ObserverFunc(func(e transport.Event) { mu.Lock(); counts[e.Kind]++; mu.Unlock() })
		rt := transport.New(gate, transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Millisecond}, Observer: obs})
		const calls = 100
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
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%d hedges reached the server, %d EventHedge, %d attempts", hedges, counts[transport.EventHedge], len(stub.attempts()))
		assert.Positive(t, hedges)
		assert.Less(t, hedges, calls/2, "the budget refused most hedges")
		assert.Equal(t, hedges, counts[transport.EventHedge], "one EventHedge per hedge the server saw")
		assert.Equal(t, len(stub.attempts()), counts[transport.EventAttempt]+counts[transport.EventHedge])
	})
}

// A huge MaxHedges is a bound, not an overflow: the call is hedged as far
// as its attempts allow, and never panics.
func TestHedgeMaxHedgesHuge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
			if i == 0 {
				return time.Second, 200
			}
			return 50 * time.Millisecond, 200
		}}
		rt := transport.New(stub, transport.Config{Hedge: &transport.HedgeConfig{MaxHedges: int(^uint(0) >> 1), Delay: 10 * time.Millisecond}})
		resp, err := rt.RoundTrip(reqTo(t, "/x"))
		require.NoError(t, err)
		readAll(t, resp)
		settle()
		assert.Len(t, stub.attempts(), 4, "the default 4 attempts, three of them hedges")
	})
}

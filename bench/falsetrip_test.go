package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

// The busy host of TestFalseTrips: callers goroutines, each sending burst
// calls every tick, that is 20 × 5 / 10 ms = 10,000 calls per second.
const (
	tripCallers = 20
	tripBurst   = 5
	tripTick    = 10 * time.Millisecond
)

// TestFalseTrips compares rebound's breaker with sony/gobreaker's defaults
// (trip on more than 5 consecutive failures, open 60 s) on a busy host:
// 20 callers at 10,000 calls per second in all, against a stub that fails
// a share of calls at random, in virtual time (testing/synctest; gobreaker
// reads time.Now, which the bubble virtualises too).
//
// At 10% failures the host is merely flaky: a breaker that opens turns a
// 10% error rate into a 100% outage for its open time. rebound judges a
// busy host by its failure rate (≥ 50% of ≥ 20 calls), so it never opens;
// a consecutive-failures rule meets a run of 6 failures about once every
// million calls, here every couple of minutes. The simulation lasts 10
// virtual minutes (1 under the race detector, to stay quick). At 60%
// failures both must open, which shows the harness can see a trip.
func TestFalseTrips(t *testing.T) {
	flaky := 10 * time.Minute
	if raceEnabled {
		flaky = time.Minute
	}
	gates := []struct {
		name string
		new  func(next http.RoundTripper, opened func()) http.RoundTripper
	}{
		{"rebound", func(next http.RoundTripper, opened func()) http.RoundTripper {
			return breaker.NewTransport(next, breaker.Config{OnStateChange: func(c breaker.StateChange) {
				if c.To == breaker.Open {
					opened()
				}
			}})
		}},
		{"gobreaker", func(next http.RoundTripper, opened func()) http.RoundTripper {
			return newGobreaker(next, gobreaker.Settings{Name: "x", OnStateChange: func(_ string, _, to gobreaker.State) {
				if to == gobreaker.StateOpen {
					opened()
				}
			}})
		}},
	}
	scenarios := []struct {
		name     string
		failRate float64
		duration time.Duration
	}{
		{"10% flaky", 0.10, flaky},
		{"60% failing", 0.60, time.Minute},
	}

	var table strings.Builder
	fmt.Fprintf(&table, "%-10s %-12s %8s %10s %6s %8s\n", "breaker", "host", "virtual", "calls", "opens", "refused")
	for _, sc := range scenarios {
		for _, g := range gates {
			t.Run(g.name+"/"+sc.name, func(t *testing.T) {
				got := simulateBusyHost(t, g.new, sc.failRate, sc.duration)
				refused := float64(got.refused) / float64(got.calls)
				t.Logf("%d calls in %v, opened %d times, refused %.2f%% of calls", got.calls, sc.duration, got.opens, 100*refused)
				fmt.Fprintf(&table, "%-10s %-12s %8v %10d %6d %7.2f%%\n", g.name, sc.name, sc.duration, got.calls, got.opens, 100*refused)

				if sc.failRate >= 0.5 {
					require.Positive(t, got.opens, "a host failing %.0f%% of calls must trip the breaker", 100*sc.failRate)
				}
				if g.name == "rebound" && sc.failRate <= 0.1 {
					require.Zero(t, got.opens, "a busy host failing %.0f%% of calls must never trip", 100*sc.failRate)
				}
			})
		}
	}
	t.Logf("breakers on a busy host (%d callers, %d calls/s):\n%s", tripCallers, tripCallers*tripBurst*int(time.Second/tripTick), table.String())
}

// tripCount is what simulateBusyHost counted.
type tripCount struct {
	calls, refused, opens int64
}

// simulateBusyHost runs, in a synctest bubble, tripCallers goroutines that
// each send tripBurst calls every tripTick for d of virtual time through
// newGate(a stub failing failRate of calls at random), and counts the
// calls, the calls the breaker refused and the times it opened.
func simulateBusyHost(t *testing.T, newGate func(http.RoundTripper, func()) http.RoundTripper, failRate float64, d time.Duration) tripCount {
	var got tripCount
	synctest.Test(t, func(t *testing.T) {
		var calls, refused, opens atomic.Int64
		rt := newGate(flakyStub{failRate: failRate}, func() { opens.Add(1) })
		req, err := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
		require.NoError(t, err)
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for range tripCallers {
			wg.Go(func() {
				for time.Now().Before(end) {
					for range tripBurst {
						resp, err := rt.RoundTrip(req)
						calls.Add(1)
						switch {
						case err == nil:
							resp.Body.Close()
						case errors.Is(err, breaker.ErrOpen),
							errors.Is(err, gobreaker.ErrOpenState),
							errors.Is(err, gobreaker.ErrTooManyRequests):
							refused.Add(1)
						default:
							t.Errorf("unexpected error: %v", err)
							return
						}
					}
					time.Sleep(tripTick)
				}
			})
		}
		wg.Wait()
		got = tripCount{calls: calls.Load(), refused: refused.Load(), opens: opens.Load()}
	})
	return got
}

// flakyStub answers 503 to a random failRate share of requests and 200 to
// the rest, at once. Its responses are shared and must not be modified;
// it is safe for concurrent use.
type flakyStub struct{ failRate float64 }

var (
	stubOK          = &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}
	stubUnavailable = &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: http.NoBody}
)

func (s flakyStub) RoundTrip(*http.Request) (*http.Response, error) {
	if rand.Float64() < s.failRate {
		return stubUnavailable, nil
	}
	return stubOK, nil
}

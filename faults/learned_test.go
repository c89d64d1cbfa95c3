package faults

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// learnedID is the client with learned attempt timeouts.
const learnedID = "learned"

// TestToxiproxyStallLearnedTimeout: toxiproxy's timeout toxic stalls 30 %
// of connections (nothing gets through, the connection stays open), and
// each call has a 3 s deadline. The plain client and the default chain
// lose every call that meets a stalled connection (its attempt waits out
// the deadline); the chain with learned attempt timeouts cuts a stalled
// attempt after max(200 ms, 3 × p99 of the host's answers) and retries on
// a new connection.
//
// Its settings: LearnedTimeout with MinSamples 30 (learned after about 45
// calls), AttemptTimeout 600 ms until then, 6 attempts, and a retry budget
// of one retry per first attempt (the default 20 % would refuse most of
// the 0.43 retries per call that 30 % stalls need). Once learned, a call
// fails only if its first five connections stall, 0.3⁵ = 0.24 %, and its
// backoffs leave no room for a sixth (about half of those), or all six
// stall (0.07 %); before, 0.3⁴ = 0.8 % of about 45 calls. On a quiet
// machine (about 700 calls) that is 1.5 failures expected; the assertion,
// at most 1 % of calls (7 or more), fails with probability about 10⁻³
// (Poisson).
func TestToxiproxyStallLearnedTimeout(t *testing.T) {
	const toxicity = 0.3
	o := newOrigin(512, true) // a new connection per call: each meets the toxic on its own
	o.hits[learnedID] = new(atomic.Int64)
	up := startOrigin(t, o)
	cs := newClients(t)[:2] // plain, rebound
	learned := newClient(learnedID, "rebound, learned timeout", func(c *client, base http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(base, rebound.WithObserver(c.observer()), rebound.WithPolicy(rebound.Policy{
			Retry: transport.Config{
				MaxAttempts:    6,
				AttemptTimeout: 600 * time.Millisecond,
				LearnedTimeout: &transport.LearnedTimeoutConfig{MinSamples: 30},
			},
			Budget: budget.Config{Ratio: budget.RatioConfig{Ratio: 1}},
		}))
	})
	t.Cleanup(learned.base.CloseIdleConnections)
	cs = append(cs, learned)
	addrs := make(map[*client]string)
	for _, c := range cs {
		addrs[c] = startProxy(t, up.Listener.Addr().String(),
			fmt.Sprintf(`{"type":"timeout","stream":"upstream","toxicity":%v,"attributes":{"timeout":0}}`, toxicity))
	}
	l := load{workers: 20, duration: 6 * time.Second, maxCalls: 2000, pace: 10 * time.Millisecond, timeout: 3 * time.Second, method: http.MethodGet, path: "/"}
	lag := drive(cs, func(c *client) string { return "http://" + addrs[c] + l.path }, l, nil)
	table(t, "toxiproxy: timeout (stalled connection) 30 %, learned attempt timeouts", l, cs, lag, extra{upstream: o.upstream})
	checkCommon(t, cs, lag)
	if got := cs[0].okShare(); got < 1-toxicity-0.2 {
		msg := fmt.Sprintf("NOT JUDGED: the plain client succeeded in %.1f %% of calls where the fault leaves %.0f %%: the machine is too loaded (lag %s)",
			100*got, 100*(1-toxicity), lag.Round(time.Millisecond))
		if os.Getenv("CI") == "true" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	} else {
		got := learned.okShare()
		t.Logf("learned timeouts: %.2f %% of %d calls succeeded", 100*got, learned.calls.Load())
		if got < 0.99 {
			t.Errorf("learned timeouts: %.2f %% of calls succeeded, want at least 99 %%: %s", 100*got, learned.topFailures(3))
		}
	}
	checkConnections(t, cs)
}

package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/require"
)

// amplificationCalls is how many calls each library makes in each mode.
const amplificationCalls = 200

// TestAmplification sends calls through each library to a real server on
// 127.0.0.1 that answers 503 to everything, and counts what reaches the
// server: hits per call is how much an outage is amplified by retries.
// Backoff is made negligible (1 ns, or no delay) so the test measures the
// retry policy, not the clock.
//
// Two modes: 200 sequential calls, and 20 callers making 10 calls each at
// once. rebound runs twice: its default chain, whose breaker opens after a
// few failures and then fails calls fast, and the chain without the
// breaker, where the retry budget alone bounds the retries. The latter
// also makes 2000 sequential calls, because the budget holds a fixed
// reserve of retries (10/s × 10 s) that weighs on 200 calls but not on
// 2000. conns is how many TCP connections the server accepted, and
// unclosed how many responses the library neither closed nor returned: a
// library that does not close the responses it retries cannot reuse their
// connections, and leaks them (with two goroutines each) until the server
// goes away. The test closes those itself, afterwards.
//
// Only what holds by construction is asserted: go-retryablehttp makes
// exactly 5 attempts per call (4 retries), failsafe-go 4 (3 retries), and
// failsafe-go's budget, which limits concurrent retries, cannot act on
// sequential calls. rebound's figures are reported, not asserted, here.
func TestAmplification(t *testing.T) {
	var (
		fast      = transport.Config{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}
		reboundRT = func(base http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(base, rebound.WithRetry(fast))
		}
		noBreakerRT = func(base http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{Retry: fast, DisableBreaker: true}))
		}
		retryableRT = func(base http.RoundTripper) http.RoundTripper { return newRetryable(base, time.Nanosecond) }
		failsafeRT  = func(base http.RoundTripper) http.RoundTripper { return newFailsafe(base, nil) }
		budgetRT    = func(base http.RoundTripper) http.RoundTripper { return newFailsafe(base, budget.New()) }
	)
	const seq, par = "sequential", "20 callers"
	rows := []struct {
		lib, mode      string
		callers, calls int
		wrap           func(http.RoundTripper) http.RoundTripper
		// min and max bound hits per call; both zero: not asserted.
		min, max float64
	}{
		{"rebound", seq, 1, amplificationCalls, reboundRT, 0, 0},
		{"rebound", par, 20, amplificationCalls, reboundRT, 0, 0},
		{"rebound-nobreaker", seq, 1, amplificationCalls, noBreakerRT, 0, 0},
		{"rebound-nobreaker", par, 20, amplificationCalls, noBreakerRT, 0, 0},
		{"rebound-nobreaker", seq, 1, 10 * amplificationCalls, noBreakerRT, 0, 0},
		{"retryablehttp", seq, 1, amplificationCalls, retryableRT, 5, 5},
		{"retryablehttp", par, 20, amplificationCalls, retryableRT, 5, 5},
		{"failsafe", seq, 1, amplificationCalls, failsafeRT, 4, 4},
		{"failsafe", par, 20, amplificationCalls, failsafeRT, 4, 4},
		{"failsafe+budget", seq, 1, amplificationCalls, budgetRT, 4, 4},
		{"failsafe+budget", par, 20, amplificationCalls, budgetRT, 1, 4},
	}

	var table strings.Builder
	fmt.Fprintf(&table, "%-18s %-11s %6s %6s %9s %6s %9s\n", "library", "mode", "calls", "hits", "hits/call", "conns", "unclosed")
	for _, row := range rows {
		t.Run(fmt.Sprintf("%s/%s/%d", row.lib, row.mode, row.calls), func(t *testing.T) {
			got := amplify(t, row.wrap, row.callers, row.calls)
			ratio := float64(got.hits) / float64(got.calls)
			t.Logf("%d hits / %d calls = %.2f, %d connections, %d responses left unclosed", got.hits, got.calls, ratio, got.conns, got.unclosed)
			fmt.Fprintf(&table, "%-18s %-11s %6d %6d %9.2f %6d %9d\n", row.lib, row.mode, got.calls, got.hits, ratio, got.conns, got.unclosed)

			require.Equal(t, int64(row.calls), got.calls, "every call must end")
			if row.max > 0 {
				require.GreaterOrEqual(t, ratio, row.min)
				require.LessOrEqual(t, ratio, row.max)
			}
		})
	}
	t.Logf("amplification against a server answering 503 to everything:\n%s", table.String())
}

// outcome is what one run of amplify counted.
type outcome struct {
	calls, hits, conns, unclosed int64
}

// amplify starts a server that answers every request with a 503 and a
// short body, sends total GETs through wrap(a pooled base) from callers
// goroutines, and returns the calls made, the requests the server received
// and the connections it accepted, and the responses nobody closed.
// Everything it starts is stopped before it returns.
func amplify(t *testing.T, wrap func(http.RoundTripper) http.RoundTripper, callers, total int) outcome {
	t.Helper()
	var hits, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "overloaded, try later", http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	pool := cleanhttp.DefaultPooledTransport()
	defer pool.CloseIdleConnections()
	base := &janitor{next: pool}
	rt := wrap(base)

	var calls atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		n := total / callers
		if c < total%callers {
			n++
		}
		wg.Go(func() {
			for range n {
				req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/things", nil)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := rt.RoundTrip(req)
				calls.Add(1)
				closeOutcome(resp, err)
			}
		})
	}
	wg.Wait()
	unclosed := base.closeAll()
	return outcome{calls: calls.Load(), hits: hits.Load(), conns: conns.Load(), unclosed: unclosed}
}

// janitor is a base RoundTripper that keeps every response body it hands
// out, so that the bodies a library forgets can be counted and closed.
type janitor struct {
	next   http.RoundTripper
	mu     sync.Mutex
	bodies []*trackedBody
}

func (j *janitor) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := j.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b := &trackedBody{ReadCloser: resp.Body}
	resp.Body = b
	j.mu.Lock()
	j.bodies = append(j.bodies, b)
	j.mu.Unlock()
	return resp, nil
}

// closeAll closes every body not closed yet and returns how many there
// were.
func (j *janitor) closeAll() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	var n int64
	for _, b := range j.bodies {
		if !b.closed.Load() {
			n++
			b.Close()
		}
	}
	return n
}

// trackedBody records whether it was closed.
type trackedBody struct {
	io.ReadCloser
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

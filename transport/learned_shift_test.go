package transport_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
)

// A host whose latency shifts up for a good reason (10 ms → 300 ms, or
// → 2 s), called by 20 workers whose deadlines are 1.5 times the new
// latency, with the default learned timeouts: from 2 s after the shift at
// least 95 % of calls succeed, and during the shift (its first ten new
// latencies, at least 2 s) the host sees at most 1.5 attempts per call
// in progress. (Before cut and deadline-ended attempts were recorded, no
// call ever succeeded again after a shift to 300 ms.) The round of calls
// in flight at the shift pays one cut attempt each: nothing could tell
// them the host had slowed.
func TestLearnedTimeoutKeepsLearningAfterShift(t *testing.T) {
	for _, slow := range []time.Duration{300 * time.Millisecond, 2 * time.Second} {
		t.Run(slow.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const workers = 20
				var mu sync.Mutex
				shifted := false
				var shiftAt time.Time
				stub := &slowStub{answer: func(req *http.Request, i int) (time.Duration, int) {
					if shifted {
						return slow, 200
					}
					return 10 * time.Millisecond, 200
				}}
				rt := transport.New(stub, transport.Config{LearnedTimeout: &transport.LearnedTimeoutConfig{}})
				deadline := slow * 3 / 2
				type call struct {
					start, end time.Time
					ok         bool
				}
				var calls []call
				end := time.Now().Add(6*time.Second + 10*slow)
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for time.Now().Before(end) {
							start := time.Now()
							ctx, cancel := context.WithTimeout(context.Background(), deadline)
							resp, err := rt.RoundTrip(reqTo(t, "/x").WithContext(ctx))
							if err == nil {
								readAll(t, resp)
							}
							cancel()
							mu.Lock()
							calls = append(calls, call{start, time.Now(), err == nil})
							mu.Unlock()
							if err != nil {
								time.Sleep(time.Millisecond) // a failed call's caller does not spin
							}
						}
					})
				}
				time.Sleep(3 * time.Second) // the 10 ms host is learned
				stub.mu.Lock()
				shifted, shiftAt = true, time.Now()
				stub.mu.Unlock()
				wg.Wait()
				settle()

				shiftEnd := shiftAt.Add(max(2*time.Second, 10*slow))
				var during, after, afterOK, sentDuring int
				for _, c := range calls {
					if c.end.After(shiftAt) && c.start.Before(shiftEnd) {
						during++
					}
					if !c.start.Before(shiftAt.Add(2 * time.Second)) {
						after++
						if c.ok {
							afterOK++
						}
					}
				}
				for _, a := range stub.attempts() {
					if !a.at.Before(shiftAt) && a.at.Before(shiftEnd) {
						sentDuring++
					}
				}
				t.Logf("after the shift to %v: %d of %d calls ok from 2 s on; in the shift's first %v %d attempts for %d calls (%.2f per call)",
					slow, afterOK, after, shiftEnd.Sub(shiftAt), sentDuring, during, float64(sentDuring)/float64(max(during, 1)))
				assert.Positive(t, after)
				assert.GreaterOrEqual(t, float64(afterOK), 0.95*float64(after), "calls succeed from 2 s after the shift")
				assert.LessOrEqual(t, float64(sentDuring), 1.5*float64(during), "attempts per call during the shift")
			})
		})
	}
}

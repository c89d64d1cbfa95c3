package breaker_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/rebound-http/rebound/breaker"
)

// Reset closes an open breaker, reports the change with ReasonReset, and
// lets the host's next call through; a stale outcome from before the
// reset counts for nothing.
func TestResetClosesAndReports(t *testing.T) {
	srv := newFlaky(t, http.StatusInternalServerError)
	var mu sync.Mutex
	var changes []breaker.StateChange
	tr := newTransport(t, breaker.Config{OnStateChange: func(c breaker.StateChange) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	}})
	host := srv.Listener.Addr().String()
	if tr.Reset(host) {
		t.Fatal("an untracked host has nothing to reset")
	}
	for range breaker.DefaultMinCalls {
		send(t, tr, srv.URL)
	}
	r, ok := tr.Report(host)
	if !ok || r.State != breaker.Open || r.Reason == "" || !r.DeadHost {
		t.Fatalf("before the reset: %+v %v", r, ok)
	}
	if len(tr.Reports()) != 1 {
		t.Fatalf("Reports: %+v", tr.Reports())
	}
	srv.status.Store(http.StatusOK)
	if !tr.Reset(host) {
		t.Fatal("Reset of a tracked host reported nothing to reset")
	}
	r, _ = tr.Report(host)
	if r.State != breaker.Closed || r.Reason != "" || r.Trips != 1 || r.Evidence != 0 {
		t.Fatalf("after the reset: %+v", r)
	}
	if code, err := send(t, tr, srv.URL); err != nil || code != 200 {
		t.Fatalf("after the reset: %d %v", code, err)
	}
	mu.Lock()
	last, n := changes[len(changes)-1], len(changes)
	mu.Unlock()
	if last.From != breaker.Open || last.To != breaker.Closed || last.Reason != breaker.ReasonReset {
		t.Fatalf("the reset's change: %+v", last)
	}
	tr.Reset(host) // closed already: no change to report
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != n {
		t.Fatalf("a closed breaker's reset reported %+v", changes[n:])
	}
}

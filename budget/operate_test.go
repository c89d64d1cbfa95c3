package budget_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// retry sends one retry (attempt 2) to host through gate.
func retry(gate http.RoundTripper, host string) error {
	ctx := transport.WithAttempt(context.Background(), transport.Attempt{N: 2})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
	resp, err := gate.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// spend sends retries to host until the budget refuses one.
func spend(t *testing.T, gate http.RoundTripper, host string) {
	t.Helper()
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("the budget never refused")
		}
		if err := retry(gate, host); errors.Is(err, budget.ErrExhausted) {
			return
		}
	}
}

// Reset gives a host its own budget back; WithNext shares every budget
// with the Transport it came from; a shared budget is not reset.
func TestResetAndWithNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := budget.NewTransport(newFixed(), budget.Config{PerHost: true})
		other := gate.WithNext(newFixed())
		if gate.Reset("a.test") {
			t.Fatal("a host never seen has nothing to reset")
		}
		spend(t, gate, "a.test")
		if err := retry(other, "a.test"); !errors.Is(err, budget.ErrExhausted) {
			t.Fatalf("WithNext's Transport has its own budget: %v", err)
		}
		if err := retry(gate, "b.test"); err != nil {
			t.Fatalf("another host's budget: %v", err)
		}
		if !gate.Reset("A.test.") {
			t.Fatal("Reset found nothing for a spent host")
		}
		if err := retry(other, "a.test"); err != nil {
			t.Fatalf("after the reset: %v", err)
		}

		shared := budget.NewTransport(newFixed(), budget.Config{})
		spend(t, shared, "a.test")
		if shared.Reset("a.test") {
			t.Fatal("a budget shared by every host was reset for one")
		}
		if err := retry(shared, "b.test"); !errors.Is(err, budget.ErrExhausted) {
			t.Fatalf("the shared budget: %v", err)
		}
	})
}

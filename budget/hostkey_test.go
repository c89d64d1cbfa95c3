package budget_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
)

// One host written in several ways (case, trailing dot, default port,
// Unicode or A-label) has one per-host budget, and refusals name it in the
// canonical form that Balance takes.
func TestGatePerHostFoldsHostForms(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	refusals := new(recorder)
	gate := budget.NewTransport(s, budget.Config{PerHost: true, Ratio: floorOnly(1), OnRefuse: refusals.add})
	try := func(url string) error {
		resp, err := gate.RoundTrip(get(url, true))
		if resp != nil {
			resp.Body.Close()
		}
		return err
	}
	for _, host := range []struct{ first, second, canonical string }{
		{"https://api.example.com/", "https://API.Example.com.:443/x", "api.example.com"},
		{"https://bücher.example./", "https://XN--BCHER-KVA.example/", "xn--bcher-kva.example"},
		{"http://[::1]:80/", "http://[0:0::1]/", "[::1]"},
	} {
		if err := try(host.first); err != nil {
			t.Fatalf("%s: first retry refused: %v", host.first, err)
		}
		if err := try(host.second); err != budget.ErrExhausted {
			t.Fatalf("%s after %s: %v, want ErrExhausted (one budget)", host.second, host.first, err)
		}
		rs := refusals.list()
		if got := rs[len(rs)-1].Host; got != host.canonical {
			t.Errorf("refusal names %q, want %q", got, host.canonical)
		}
		if b := gate.Balance(host.canonical); b != 0 {
			t.Errorf("Balance(%q) = %v, want 0", host.canonical, b)
		}
	}
	if b := gate.Balance("API.example.com."); b != 0 {
		t.Errorf("Balance of a non-canonical spelling = %v, want the host's 0", b)
	}
}

// clockBudget records the instants the gate and Balance pass to it.
type clockBudget struct {
	mu      sync.Mutex
	deposit time.Time
	balance time.Time
}

func (c *clockBudget) Deposit(now time.Time) {
	c.mu.Lock()
	c.deposit = now
	c.mu.Unlock()
}

func (c *clockBudget) Withdraw(time.Time) bool { return true }

func (c *clockBudget) Balance(now time.Time) float64 {
	c.mu.Lock()
	c.balance = now
	c.mu.Unlock()
	return 0
}

// Balance reads the clock the gate reads (internal/clock: the start-up
// epoch plus monotonic time), not time.Now, whose wall reading drifts from
// the monotonic one as NTP slews the clock and jumps when it is set. The
// two readings are on one clock exactly when their wall difference equals
// their monotonic difference; time.Now reads its wall and monotonic clocks
// separately, so against the gate's clock the two differ by some
// nanoseconds on every read.
func TestBalanceReadsTheGatesClock(t *testing.T) {
	for _, perHost := range []bool{false, true} {
		b := new(clockBudget)
		gate := budget.NewTransport(&stub{respond: status(http.StatusOK)}, budget.Config{
			PerHost:   perHost,
			NewBudget: func() budget.Budget { return b },
		})
		for range 20 {
			resp, err := gate.RoundTrip(get("http://a.test/", false))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			gate.Balance("a.test")
			b.mu.Lock()
			mono, wall := b.balance.Sub(b.deposit), time.Duration(b.balance.UnixNano()-b.deposit.UnixNano())
			b.mu.Unlock()
			if mono != wall {
				t.Fatalf("PerHost %v: Balance read %v after the deposit on the monotonic clock but %v on the wall clock: not the gate's clock", perHost, mono, wall)
			}
		}
	}
}

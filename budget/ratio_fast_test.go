package budget_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/budget"
)

// TestRatioConcurrentDepositsAllCount checks the lock-free deposit path
// against the locked one: goroutines deposit at instants spread over six
// buckets of a 10 s window, in random order, while others withdraw and
// read the balance (each of which folds the lock-free deposits into the
// window). Every deposit stays within the window, so whichever bucket it
// lands in, the final balance is exact: Ratio·deposits + reserve −
// retries allowed. A deposit lost or counted twice shows.
func TestRatioConcurrentDepositsAllCount(t *testing.T) {
	const (
		goroutines = 8
		each       = 5000
	)
	for round := range 5 {
		t0 := time.Unix(1_700_000_000, 0)
		r := budget.NewRatio(budget.RatioConfig{Ratio: 0.5, MinPerSecond: -1})
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed int
		)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := range each {
					// Mostly the newest buckets, as a busy client's
					// clock reads are; now and then an older one.
					at := t0.Add(time.Duration(rng.Int64N(int64(6 * time.Second))))
					if i%4 != 0 {
						at = t0.Add(5*time.Second + time.Duration(rng.Int64N(int64(time.Second))))
					}
					r.Deposit(at)
					switch i % 50 {
					case 7:
						if r.Withdraw(at) {
							mu.Lock()
							allowed++
							mu.Unlock()
						}
					case 31:
						r.Balance(at)
					}
				}
			}()
		}
		wg.Wait()
		got := r.Balance(t0.Add(5900 * time.Millisecond))
		if want := 0.5*goroutines*each - float64(allowed); got != want {
			t.Fatalf("round %d: balance %v, want %v (%d deposits, %d retries allowed)", round, got, want, goroutines*each, allowed)
		}
	}
}

// TestRatioLockFreeDepositsExpire checks that deposits counted without
// the lock leave the window with their bucket.
func TestRatioLockFreeDepositsExpire(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := budget.NewRatio(budget.RatioConfig{Ratio: 1, MinPerSecond: -1})
	for i := range 100 {
		r.Deposit(t0.Add(time.Duration(i) * time.Millisecond)) // one bucket: all but the first lock-free
	}
	if got := r.Balance(t0.Add(9 * time.Second)); got != 100 {
		t.Fatalf("balance within the window %v, want 100", got)
	}
	if got := r.Balance(t0.Add(10 * time.Second)); got != 0 {
		t.Fatalf("balance once the bucket left the window %v, want 0", got)
	}
	var zero budget.Ratio // the zero value sets itself up on first use
	zero.Deposit(t0)
	zero.Deposit(t0)
	if got, want := zero.Balance(t0), 2*budget.DefaultRatio+budget.DefaultMinPerSecond*budget.DefaultWindow.Seconds(); got != want {
		t.Fatalf("zero Ratio balance %v, want %v", got, want)
	}
}

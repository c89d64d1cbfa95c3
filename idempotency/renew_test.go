package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
)

// slowStore is a Store whose every call takes delay. By default the call
// reaches the underlying store at once (as a database statement's now()
// is its start) and its answer comes delay later; with late set, the
// call takes effect at its end instead.
type slowStore struct {
	idempotency.Store
	delay time.Duration
	late  bool
}

// around runs op before or after the call's delay.
func (s *slowStore) around(op func()) {
	if s.late {
		time.Sleep(s.delay)
		op()
		return
	}
	op()
	time.Sleep(s.delay)
}

func (s *slowStore) Reserve(ctx context.Context, key string, fp idempotency.Fingerprint, lease time.Duration) (rec idempotency.Record, ok bool, err error) {
	s.around(func() { rec, ok, err = s.Store.Reserve(ctx, key, fp, lease) })
	return rec, ok, err
}

func (s *slowStore) Renew(ctx context.Context, key string, token uint64, lease time.Duration) (err error) {
	s.around(func() { err = s.Store.Renew(ctx, key, token, lease) })
	return err
}

func (s *slowStore) Complete(ctx context.Context, key string, token uint64, resp *idempotency.Response, ttl time.Duration) (err error) {
	s.around(func() { err = s.Store.Complete(ctx, key, token, resp, ttl) })
	return err
}

// TestRenewalSlowStore: with a store that takes 90 % of the lease per
// call, Reserve and Renew included, whether a call takes effect at its
// start or at its end, handlers that run five leases long keep their
// keys: a retry of each key, tried every 100 ms against the store once
// the keys are reserved, never finds one free, and every handler's
// response is stored.
func TestRenewalSlowStore(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "effect at the start", true: "effect at the end"}[late], func(t *testing.T) {
			testRenewalSlowStore(t, late)
		})
	}
}

func testRenewalSlowStore(t *testing.T, late bool) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 3 * time.Second
		mem := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		var runs atomic.Int64
		var mu sync.Mutex
		decisions := map[idempotency.Decision]int{}
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			time.Sleep(5 * lease)
			w.WriteHeader(http.StatusCreated)
		})
		mw := idempotency.Middleware(&slowStore{Store: mem, delay: lease * 9 / 10, late: late}, idempotency.MiddlewareConfig{
			Lease: lease, Scope: noScope,
			OnDecision: func(_ *http.Request, d idempotency.Decision) {
				mu.Lock()
				decisions[d]++
				mu.Unlock()
			},
		})(h)

		const n = 8
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("order"))
				req.Header.Set(idempotency.HeaderKey, "k"+strconv.Itoa(i))
				rec := httptest.NewRecorder()
				mw.ServeHTTP(rec, req)
				codes[i] = rec.Code
			})
		}
		time.Sleep(lease) // every Reserve has taken effect
		takeovers := 0
		for range int(6 * lease / (100 * time.Millisecond)) {
			time.Sleep(100 * time.Millisecond)
			for i := range n {
				_, free, err := mem.Reserve(context.Background(), idempotency.StoreKey("", "k"+strconv.Itoa(i)), idempotency.Fingerprint{}, lease)
				assert.NoError(t, err)
				if free {
					takeovers++
				}
			}
		}
		wg.Wait()
		assert.Zero(t, takeovers, "a retry found a running handler's key free")
		assert.EqualValues(t, n, runs.Load())
		for i, c := range codes {
			assert.Equal(t, http.StatusCreated, c, "request %d", i)
		}
		assert.Equal(t, map[idempotency.Decision]int{idempotency.DecisionExecuted: n}, decisions)
	})
}

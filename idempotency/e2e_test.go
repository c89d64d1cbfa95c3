package idempotency_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// orders is a "create order" endpoint that records every execution.
type orders struct {
	mu      sync.Mutex
	created map[int]int // order number → times created
}

func (o *orders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n, err := strconv.Atoi(strings.TrimPrefix(string(body), "order-"))
	if err != nil {
		http.Error(w, "bad order", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.created[n]++
	o.mu.Unlock()
	w.Header().Set("Location", "/orders/"+strconv.Itoa(n))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "created order-%d", n)
}

// loseFirstResponses wraps the whole server: for the first request with
// each key whose order number ends in 0, 1 or 2 (30% of them), it lets the
// rest of the server handle the request, then discards the response and
// hijacks and closes the connection, as a crash of the network path after
// the work was done would. The client sees the connection drop.
type loseFirstResponses struct {
	next  http.Handler
	mu    sync.Mutex
	seen  map[string]bool
	drops atomic.Int64
}

func (f *loseFirstResponses) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(idempotency.HeaderKey)
	f.mu.Lock()
	first := !f.seen[key]
	f.seen[key] = true
	f.mu.Unlock()
	if !first || lastDigit(r.Header.Get("X-Order")) > 2 {
		f.next.ServeHTTP(w, r)
		return
	}
	f.next.ServeHTTP(httptest.NewRecorder(), r) // the work happens; the answer is lost
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	f.drops.Add(1)
	conn.Close()
}

func lastDigit(s string) int {
	if s == "" {
		return 9
	}
	return int(s[len(s)-1] - '0')
}

// e2eResult is what one end-to-end run observed.
type e2eResult struct {
	created    map[int]int
	drops      int
	replays    int64
	answers201 int
	errors     int // calls that failed (a lost answer that was not retried)
}

// runE2E sends calls POSTs, from parallel callers, through the full client
// chain (key injection outside the retry loop) to a loopback server that
// loses 30% of first responses after doing the work, with or without the
// middleware in front of the handler, and with or without declaring that
// the server honours keys (Config.KeysHonored).
func runE2E(t *testing.T, calls int, withMiddleware, declared bool) e2eResult {
	t.Helper()
	o := &orders{created: make(map[int]int)}
	var replays atomic.Int64
	var handler http.Handler = o
	if withMiddleware {
		handler = idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{
			Logger: quiet,
			OnDecision: func(_ *http.Request, d idempotency.Decision) {
				if d == idempotency.DecisionReplayed {
					replays.Add(1)
				}
			},
		})(o)
	}
	fault := &loseFirstResponses{next: handler, seen: make(map[string]bool)}
	srv := httptest.NewServer(fault)
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 64}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: idempotency.NewTransport(
		transport.New(base, transport.Config{}),
		idempotency.Config{KeysHonored: declared},
	)}

	const callers = 32
	work := make(chan int)
	var ok201, failed atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for n := range work {
				req, err := http.NewRequestWithContext(context.Background(), "POST", srv.URL+"/orders",
					strings.NewReader("order-"+strconv.Itoa(n)))
				if !assert.NoError(t, err) {
					continue
				}
				req.Header.Set("X-Order", strconv.Itoa(n))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if assert.NoError(t, err) && assert.Equal(t, http.StatusCreated, resp.StatusCode, "order %d", n) &&
					assert.Equal(t, "created order-"+strconv.Itoa(n), string(body)) {
					ok201.Add(1)
				}
			}
		})
	}
	for n := range calls {
		work <- n
	}
	close(work)
	wg.Wait()

	o.mu.Lock()
	defer o.mu.Unlock()
	return e2eResult{created: o.created, drops: int(fault.drops.Load()), replays: replays.Load(),
		answers201: int(ok201.Load()), errors: int(failed.Load())}
}

// TestEndToEndExactlyOnce is the point of the package: with keys injected
// on the client and the middleware on the server (declared to the client
// with KeysHonored), lost responses are retried and every POST has its
// effect exactly once. Toward a server not declared, the generated keys
// license no retry: no effect is duplicated and the lost answers reach
// their callers as errors. A false declaration (no middleware) makes the
// same retries duplicate the effect.
func TestEndToEndExactlyOnce(t *testing.T) {
	const calls = 1000
	wantDrops := calls * 3 / 10

	t.Run("with middleware", func(t *testing.T) {
		t.Parallel()
		got := runE2E(t, calls, true, true)
		// Exactly 300 drops also proves each retry carried its call's key:
		// a new key would have looked like a first attempt and been dropped
		// again.
		require.Equal(t, wantDrops, got.drops, "30% of first responses were lost")
		assert.Equal(t, calls, got.answers201, "every caller got its 201")
		assert.Len(t, got.created, calls, "every order was created")
		dups := 0
		for _, times := range got.created {
			if times != 1 {
				dups++
			}
		}
		assert.Zero(t, dups, "no order was created twice")
		assert.EqualValues(t, wantDrops, got.replays, "each lost response was replayed")
	})

	t.Run("without middleware, undeclared", func(t *testing.T) {
		t.Parallel()
		got := runE2E(t, calls, false, false)
		require.Equal(t, wantDrops, got.drops)
		assert.Equal(t, calls-wantDrops, got.answers201)
		assert.Equal(t, wantDrops, got.errors, "a lost answer is the caller's error, not a retry")
		assert.Len(t, got.created, calls)
		for n, times := range got.created {
			if !assert.Equal(t, 1, times, "order %d", n) {
				break
			}
		}
	})

	t.Run("without middleware, falsely declared", func(t *testing.T) {
		t.Parallel()
		got := runE2E(t, calls, false, true)
		require.Equal(t, wantDrops, got.drops)
		assert.Equal(t, calls, got.answers201, "retries hide the lost responses from callers...")
		dups := 0
		for _, times := range got.created {
			if times > 1 {
				dups++
			}
		}
		assert.Equal(t, wantDrops, dups, "...but every lost response became a duplicate order")
	})
}

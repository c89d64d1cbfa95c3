package pgstore_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lossy loses the response of a share of requests after the handler ran
// and its transaction committed: it hands the handler a recorder, then
// closes the connection without a word, as a crashed proxy or a cut link
// would.
type lossy struct {
	next http.Handler
	mu   sync.Mutex
	rng  *rand.Rand
	p    float64
	lost atomic.Int64
}

func (l *lossy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	lose := l.rng.Float64() < l.p
	l.mu.Unlock()
	if !lose {
		l.next.ServeHTTP(w, r)
		return
	}
	l.next.ServeHTTP(httptest.NewRecorder(), r)
	l.lost.Add(1)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// TestChainLostResponses sends 1,000 keyed POSTs through the rebound
// chain to a service that loses 30 % of its responses after committing
// them. Every order is created exactly once: each lost response is
// retried with its key (by the chain, or by the caller when the chain
// gives up) and replayed from the table.
func TestChainLostResponses(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	var replays atomic.Int64
	mw := idempotency.Middleware(s.store, idempotency.MiddlewareConfig{
		OnDecision: func(_ *http.Request, d idempotency.Decision) {
			if d == idempotency.DecisionReplayed {
				replays.Add(1)
			}
		},
	})(s)
	l := &lossy{next: mw, rng: rand.New(rand.NewPCG(1, 2)), p: 0.3}
	srv := httptestServer(t, l)

	base := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(base.CloseIdleConnections)
	client := &http.Client{Transport: rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{
		Retry:       transport.Config{BaseDelay: time.Microsecond, MaxDelay: time.Microsecond},
		KeysHonored: true,
	}))}

	const orders, workers = 1000, 8
	var next atomic.Int64
	var resent atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= orders {
					return
				}
				key, item := fmt.Sprint("order-", i), fmt.Sprint("item-", i)
				var r reply
				for try := range 20 { // the caller's own resend, when the chain gives up
					if try > 0 {
						resent.Add(1)
					}
					if r = postVia(client, srv.URL, key, item); r.err == nil {
						break
					}
				}
				if assert.NoError(t, r.err, key) {
					assert.Equal(t, http.StatusCreated, r.status, "%s: %s", key, r.body)
				}
			}
		})
	}
	wg.Wait()

	assert.Equal(t, orders, s.orders(t), "exactly one order per key")
	assert.EqualValues(t, orders, s.runs.Load(), "one run per key")
	var items int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(DISTINCT item) FROM orders").Scan(&items))
	assert.Equal(t, orders, items)
	// Losses are Binomial(n ≥ 1000, 0.3): mean ≥ 300, sd ≈ 14.5; fewer
	// than 200 is seven deviations out.
	assert.Greater(t, l.lost.Load(), int64(200), "the fault was there")
	assert.Equal(t, l.lost.Load(), replays.Load(), "every lost response was fetched again by a replay")
	t.Logf("%d responses lost, %d replays, %d caller resends", l.lost.Load(), replays.Load(), resent.Load())
}

// postVia sends one keyed POST through client.
func postVia(client *http.Client, url, key, body string) reply {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
)

// TestExactlyOnce is issue 10's end-to-end test: 1,000 POSTs from 32
// callers through the default chain, toward a host its policy declares to
// honour keys (Policy.KeysHonored, so the generated Idempotency-Key
// licenses retries), and through idempotency.Middleware in front of a
// handler that counts its effects. toxiproxy resets 30 % of connections on
// the way down, after the handler ran and its response was stored; the
// origin closes every connection, so every attempt meets the toxic afresh.
// Each caller authenticates with its own token, so the middleware's
// default scope keeps their keys apart.
//
// Asserted: exactly 1,000 effects, one per call, whatever the clients saw;
// every response a caller received is its own call's (caller and call id
// in the body); a retried call's answer is the stored one (Idempotent-
// Replayed). Calls the chain gave up on (all attempts reset, or a retry
// the budget refused: 30 % failures need more retries than the budget's
// 20 %) are counted, not failed: their effect ran once all the same.
func TestExactlyOnce(t *testing.T) {
	const (
		calls   = 1000
		callers = 32
	)
	var (
		mu      sync.Mutex
		effects = make(map[string]int) // call id → runs of the handler
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		effects[string(body)]++
		mu.Unlock()
		fmt.Fprintf(w, "done %s for %s", body, r.Header.Get("Authorization"))
	})
	mw := idempotency.Middleware(nil, idempotency.MiddlewareConfig{})(handler)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		mw.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	addr := startProxy(t, srv.Listener.Addr().String(),
		`{"type":"reset_peer","stream":"downstream","toxicity":0.3,"attributes":{"timeout":0}}`)

	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	var attempts atomic.Int64
	client := &http.Client{Transport: rebound.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return base.RoundTrip(r)
	}), rebound.WithPolicy(rebound.Policy{KeysHonored: true}))}

	var (
		next                         atomic.Int64
		ok, gaveUp, replayed, misdir atomic.Int64
		wg                           sync.WaitGroup
		failMu                       sync.Mutex
		failures                     = make(map[string]int)
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // the whole run, at most
	defer cancel()
	for caller := range callers {
		token := fmt.Sprintf("Bearer caller-%d", caller)
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > calls || ctx.Err() != nil {
					return
				}
				id := fmt.Sprintf("order-%d", n)
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				req, _ := http.NewRequestWithContext(cctx, http.MethodPost, "http://"+addr+"/orders", strings.NewReader(id))
				req.Header.Set("Authorization", token)
				resp, err := client.Do(req)
				if err != nil {
					ccancel()
					gaveUp.Add(1)
					failMu.Lock()
					failures[reason(err)]++
					failMu.Unlock()
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				ccancel()
				switch {
				case err != nil || resp.StatusCode != http.StatusOK:
					gaveUp.Add(1)
					failMu.Lock()
					failures[fmt.Sprintf("status %d, body error %v", resp.StatusCode, err)]++
					failMu.Unlock()
				case string(body) != fmt.Sprintf("done %s for %s", id, token):
					misdir.Add(1)
					t.Errorf("%s of %s got another call's response: %q", id, token, body)
				default:
					ok.Add(1)
					if resp.Header.Get(idempotency.HeaderReplayed) == "true" {
						replayed.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the run took over 60 s; %d calls started", next.Load()-1)
	}

	mu.Lock()
	total, twice, missing := 0, 0, 0
	for n := 1; n <= calls; n++ {
		runs := effects[fmt.Sprintf("order-%d", n)]
		total += runs
		switch {
		case runs == 0:
			missing++
		case runs > 1:
			twice++
		}
	}
	mu.Unlock()
	t.Logf("exactly once: %d POSTs from %d callers, 30 %% of connections reset after the handler: %d effects (%d calls ran twice, %d never), "+
		"%d attempts (%.2f per call), %d calls succeeded (%d of them with the stored response replayed), %d gave up (%v)",
		calls, callers, total, twice, missing, attempts.Load(), float64(attempts.Load())/calls, ok.Load(), replayed.Load(), gaveUp.Load(), failures)
	if total != calls || twice != 0 || missing != 0 {
		t.Errorf("%d effects for %d calls: %d ran twice or more, %d never ran (want exactly one each)", total, calls, twice, missing)
	}
	if misdir.Load() != 0 {
		t.Errorf("%d calls got another call's response", misdir.Load())
	}
	if replayed.Load() == 0 {
		t.Errorf("no call was answered from the store: the fault or the retries did not happen")
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

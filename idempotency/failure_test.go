package idempotency_test

// Tests of the middleware under failure: handlers that fail, panic or
// hang, clients that leave, concurrent repeats, a failing store.

import (
	"context"
	"errors"
	"io"
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
	"github.com/stretchr/testify/require"
)

// flaky runs fail for its runs where fail returns true (having written
// what it likes), and otherwise answers as created does.
type flaky struct {
	created
	fail func(w http.ResponseWriter, run int64) bool
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.fail(w, f.runs.Load()+1) {
		f.runs.Add(1)
		return
	}
	f.created.ServeHTTP(w, r)
}

// noScope puts every key in the scope "", so a test can look keys up with
// StoreKey("", key).
func noScope(*http.Request) string { return "" }

// TestMiddlewareStoresEveryStatus: a response is stored whatever its
// status, 5xx included, since a handler may answer 500 after its effect;
// a retry is replayed, never run again. The Release opt-out still
// releases the statuses it picks.
func TestMiddlewareStoresEveryStatus(t *testing.T) {
	tests := []struct {
		name    string
		cfg     idempotency.MiddlewareConfig
		status  int
		release bool
	}{
		{"500 after the effect", idempotency.MiddlewareConfig{}, 500, false},
		{"503", idempotency.MiddlewareConfig{}, 503, false},
		{"429", idempotency.MiddlewareConfig{}, 429, false},
		{"400", idempotency.MiddlewareConfig{}, 400, false},
		{"409 from the handler", idempotency.MiddlewareConfig{}, 409, false},
		{"opt-out releases 503", idempotency.MiddlewareConfig{Release: idempotency.ReleaseRetryable}, 503, true},
		{"opt-out stores 400", idempotency.MiddlewareConfig{Release: idempotency.ReleaseRetryable}, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var effects atomic.Int64
			h := &flaky{fail: func(w http.ResponseWriter, run int64) bool {
				if run == 1 {
					effects.Add(1) // the effect happens, then the handler fails
					w.WriteHeader(tt.status)
					io.WriteString(w, "failed after the effect")
					return true
				}
				return false
			}}
			hs := newHarness(t, tt.cfg, h)
			first := hs.do("POST", "/", "x", "Idempotency-Key", "k")
			assert.Equal(t, tt.status, first.status)
			second := hs.do("POST", "/", "x", "Idempotency-Key", "k")
			if tt.release {
				assert.Equal(t, 201, second.status, "the retry runs the handler again")
				assert.EqualValues(t, 2, h.runs.Load())
				assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased, idempotency.DecisionExecuted}, hs.decisions())
				return
			}
			assert.Equal(t, tt.status, second.status)
			assert.Equal(t, "failed after the effect", second.body)
			assert.Equal(t, "true", second.header.Get(idempotency.HeaderReplayed))
			assert.EqualValues(t, 1, h.runs.Load(), "the effect ran once")
			assert.EqualValues(t, 1, effects.Load())
			assert.Equal(t, []idempotency.Decision{idempotency.DecisionExecuted, idempotency.DecisionReplayed}, hs.decisions())
		})
	}
}

// TestMiddlewarePanicOutcomeUnknown: a handler that panics may have had
// its effect, so its key is completed as OutcomeUnknown and a repeat gets
// a 500 problem saying so, not a second run; the panic continues. With
// ReleaseAborted the key is released instead.
func TestMiddlewarePanicOutcomeUnknown(t *testing.T) {
	for _, release := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "release aborted"}[release], func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			var runs atomic.Int64
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{ReleaseAborted: release})(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					if runs.Add(1) == 1 {
						panic("boom")
					}
					w.WriteHeader(201)
				}))
			send := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
				r.Header.Set("Idempotency-Key", "k")
				h.ServeHTTP(w, r)
				return w
			}
			assert.PanicsWithValue(t, "boom", func() { send() }, "the panic continues")
			second := send()
			if release {
				assert.Equal(t, 201, second.Code, "the key was released")
				assert.EqualValues(t, 2, runs.Load())
				return
			}
			assert.Equal(t, 500, second.Code)
			assert.Contains(t, second.Body.String(), idempotency.ProblemOutcomeUnknown)
			assert.EqualValues(t, 1, runs.Load(), "never a second run")
		})
	}
}

// TestMiddlewarePanicThroughServer: a handler that panics behind a real
// server (the connection is dropped, the client sees an error) leaves its
// key completed as OutcomeUnknown; the client's retry gets the 500
// problem, and the handler ran once.
func TestMiddlewarePanicThroughServer(t *testing.T) {
	var effects atomic.Int64
	// http.ErrAbortHandler is how a handler aborts a response; the server
	// recovers it silently and closes the connection.
	h := &flaky{fail: func(http.ResponseWriter, int64) bool {
		effects.Add(1)
		panic(http.ErrAbortHandler)
	}}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	req, _ := http.NewRequest("POST", hs.srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	_, err := hs.cl.Do(req)
	require.Error(t, err)
	retry := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 500, retry.status)
	assert.Equal(t, idempotency.ProblemOutcomeUnknown, retry.problemType())
	assert.EqualValues(t, 1, effects.Load(), "the effect ran once")
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionAborted, idempotency.DecisionOutcomeUnknown}, hs.decisions())
}

// TestMiddlewareClientGone: a handler that returns without writing after
// its client left (it gave up, or succeeded with an implicit 200 nobody
// saw) may have had its effect: its key is completed as OutcomeUnknown.
// One that wrote its answer has it stored as usual.
func TestMiddlewareClientGone(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		cfg     idempotency.MiddlewareConfig
		want    int // the repeat's status; 0 when the key was released
	}{
		{"handler gives up", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, idempotency.MiddlewareConfig{}, 500},
		{"implicit 200 after the effect", func(w http.ResponseWriter, r *http.Request) {}, idempotency.MiddlewareConfig{}, 500},
		{"release aborted", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, idempotency.MiddlewareConfig{ReleaseAborted: true}, 0},
		{"handler finished anyway: stored", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			w.WriteHeader(201)
		}, idempotency.MiddlewareConfig{}, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			tt.cfg.Scope = noScope
			h := idempotency.Middleware(store, tt.cfg)(tt.handler)
			rctx, cancel := context.WithCancel(context.Background())
			cancel() // the client is gone
			r := httptest.NewRequestWithContext(rctx, "POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(httptest.NewRecorder(), r)
			rec, found, _ := store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
			require.Equal(t, tt.want != 0, found)
			if found {
				assert.Equal(t, tt.want == 500, rec.Response.OutcomeUnknown)
			}
		})
	}
}

func TestMiddlewareInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(entered)
		<-release
		w.WriteHeader(201)
	}))
	done := make(chan result)
	go func() { done <- hs.do("POST", "/", "x", "Idempotency-Key", "k") }()
	<-entered
	got := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 409, got.status)
	assert.Equal(t, "1", got.header.Get("Retry-After"))
	assert.Equal(t, idempotency.ProblemInFlight, got.problemType())

	// A different body while in flight is a reuse, not a conflict.
	assert.Equal(t, 422, hs.do("POST", "/", "y", "Idempotency-Key", "k").status)
	close(release)
	assert.Equal(t, 201, (<-done).status)
	assert.Equal(t, "true", hs.do("POST", "/", "x", "Idempotency-Key", "k").header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 1, runs.Load())
}

func TestMiddlewareConcurrentSameKey(t *testing.T) {
	const callers = 50
	tests := []struct {
		name string
		slow bool // the handler holds until every other caller has its answer
	}{
		{"fast handler", false},
		{"handler outlasts the others", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs, answered atomic.Int64
			others := make(chan struct{})
			hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				body, _ := io.ReadAll(r.Body)
				if tt.slow {
					select {
					case <-others:
					case <-r.Context().Done():
					}
				}
				w.WriteHeader(201)
				w.Write(body)
			}))
			start := make(chan struct{})
			results := make(chan result, callers)
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					<-start
					r := hs.do("POST", "/", "same", "Idempotency-Key", "k")
					results <- r
					if r.status != 201 || r.header.Get(idempotency.HeaderReplayed) != "" {
						if answered.Add(1) == callers-1 {
							close(others)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(results)
			fresh, replayed, conflicts := 0, 0, 0
			for r := range results {
				switch {
				case r.status == 201 && r.header.Get(idempotency.HeaderReplayed) == "":
					fresh++
					assert.Equal(t, "same", r.body)
				case r.status == 201:
					replayed++
					assert.Equal(t, "same", r.body)
				case r.status == 409:
					conflicts++
				default:
					t.Errorf("unexpected answer %d %s", r.status, r.body)
				}
			}
			assert.EqualValues(t, 1, runs.Load(), "exactly one execution")
			assert.Equal(t, 1, fresh)
			assert.Equal(t, callers-1, replayed+conflicts)
			if tt.slow {
				assert.Equal(t, callers-1, conflicts, "nothing to replay while the handler runs")
			}
			t.Logf("1 executed, %d replayed, %d conflicts", replayed, conflicts)
		})
	}
}

// failingStore fails every operation.
type failingStore struct{}

var errDown = errors.New("store down")

func (failingStore) Reserve(context.Context, string, idempotency.Fingerprint, time.Duration) (idempotency.Record, bool, error) {
	return idempotency.Record{}, false, errDown
}
func (failingStore) Complete(context.Context, string, uint64, *idempotency.Response, time.Duration) error {
	return errDown
}
func (failingStore) Renew(context.Context, string, uint64, time.Duration) error { return errDown }
func (failingStore) Release(context.Context, string, uint64) error              { return errDown }
func (failingStore) Lookup(context.Context, string) (idempotency.Record, bool, error) {
	return idempotency.Record{}, false, errDown
}

func TestMiddlewareStoreFailure(t *testing.T) {
	h := &created{}
	resp, _ := postOnce(t, failingStore{}, idempotency.MiddlewareConfig{Logger: quiet, RetryAfter: 1500 * time.Millisecond}, h)
	assert.Equal(t, 503, resp.StatusCode, "fail closed: nothing runs without a reservation")
	assert.Equal(t, "2", resp.Header.Get("Retry-After"), "rounded up to whole seconds")
	assert.Zero(t, h.runs.Load())
}

// deafStore is a MemoryStore whose Renew fails, as for a holder that
// cannot reach the store (or has died).
type deafStore struct{ *idempotency.MemoryStore }

func (deafStore) Renew(context.Context, string, uint64, time.Duration) error { return errDown }

// TestMiddlewareLeaseExpiry: a holder that cannot renew loses its lease
// after Lease, so a repeat runs; the stale holder's late response is sent
// but not stored (its Complete fails), and the new holder's is kept.
func TestMiddlewareLeaseExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			runs      atomic.Int64
			mu        sync.Mutex
			decisions []idempotency.Decision
		)
		wedged := make(chan struct{})
		h := idempotency.Middleware(deafStore{idempotency.NewMemoryStore(idempotency.MemoryConfig{})}, idempotency.MiddlewareConfig{
			Lease:  30 * time.Second,
			Logger: quiet,
			OnDecision: func(_ *http.Request, d idempotency.Decision) {
				mu.Lock()
				decisions = append(decisions, d)
				mu.Unlock()
			},
		})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if runs.Add(1) == 1 {
				<-wedged // a handler that never finishes, as in a crashed process
			}
			w.WriteHeader(201)
		}))
		send := func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(w, r)
			return w
		}

		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- send() }()
		synctest.Wait() // the first request is wedged in the handler

		assert.Equal(t, 409, send().Code)
		time.Sleep(30*time.Second - time.Nanosecond)
		assert.Equal(t, 409, send().Code, "still leased just before the lease ends")
		time.Sleep(time.Nanosecond)
		second := send()
		assert.Equal(t, 201, second.Code, "the lease expired: the key is free again")
		assert.Empty(t, second.Header().Get(idempotency.HeaderReplayed))
		assert.EqualValues(t, 2, runs.Load())

		close(wedged)
		assert.Equal(t, 201, (<-done).Code, "the late handler's response still goes out")
		assert.Equal(t, "true", send().Header().Get(idempotency.HeaderReplayed), "the second run's response is kept")

		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []idempotency.Decision{
			idempotency.DecisionInFlight, idempotency.DecisionInFlight, idempotency.DecisionExecuted,
			idempotency.DecisionLeaseLost, idempotency.DecisionReplayed,
		}, decisions)
	})
}

// corruptStore answers every Reserve with a completed record for the same
// request whose stored status is status, as a buggy or corrupted Store
// might.
type corruptStore struct {
	failingStore
	status int
}

func (s corruptStore) Reserve(_ context.Context, _ string, fp idempotency.Fingerprint, _ time.Duration) (idempotency.Record, bool, error) {
	return idempotency.Record{Fingerprint: fp, Response: &idempotency.Response{Status: s.status, Body: []byte("stored")}}, false, nil
}

func TestMiddlewareInvalidStoredStatus(t *testing.T) {
	for _, tt := range []struct {
		status   int
		want     int
		replayed bool
	}{
		{status: 0, want: 500},
		{status: 42, want: 500},
		{status: 103, want: 500},
		{status: 1000, want: 500},
		{status: -1, want: 500},
		{status: 204, want: 204, replayed: true}, // a valid one is replayed
		{status: 999, want: 999, replayed: true},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			h := &created{}
			resp, body := postOnce(t, corruptStore{status: tt.status}, idempotency.MiddlewareConfig{Logger: quiet}, h)
			assert.Equal(t, tt.want, resp.StatusCode)
			assert.Zero(t, h.runs.Load(), "the handler never runs for a completed key")
			if tt.replayed {
				assert.Equal(t, "true", resp.Header.Get(idempotency.HeaderReplayed))
				return
			}
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			assert.Contains(t, string(body), idempotency.ProblemInvalidRecord)
			assert.Empty(t, resp.Header.Get(idempotency.HeaderReplayed))
		})
	}
}

// postOnce sends one keyed POST to a loopback server running h behind the
// middleware on store, and returns the response (body closed) and its body.
// An error, such as a connection the server dropped after a panic, fails t.
func postOnce(t *testing.T, store idempotency.Store, cfg idempotency.MiddlewareConfig, h http.Handler) (*http.Response, []byte) {
	t.Helper()
	srv := httptest.NewServer(idempotency.Middleware(store, cfg)(h))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err, "the server answers rather than dropping the connection")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

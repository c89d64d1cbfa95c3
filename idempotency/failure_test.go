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

func TestMiddlewareReleasesOnFailure(t *testing.T) {
	tests := []struct {
		name    string
		cfg     idempotency.MiddlewareConfig
		status  int
		release bool
	}{
		{"500", idempotency.MiddlewareConfig{}, 500, true},
		{"503", idempotency.MiddlewareConfig{}, 503, true},
		{"429", idempotency.MiddlewareConfig{}, 429, true},
		{"400 is stored", idempotency.MiddlewareConfig{}, 400, false},
		{"409 from the handler is stored", idempotency.MiddlewareConfig{}, 409, false},
		{"custom release keeps 503", idempotency.MiddlewareConfig{Release: func(int) bool { return false }}, 503, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &flaky{fail: func(w http.ResponseWriter, run int64) bool {
				if run == 1 {
					w.WriteHeader(tt.status)
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
				third := hs.do("POST", "/", "x", "Idempotency-Key", "k")
				assert.Equal(t, "true", third.header.Get(idempotency.HeaderReplayed))
				assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased, idempotency.DecisionExecuted,
					idempotency.DecisionReplayed}, hs.decisions())
			} else {
				assert.Equal(t, tt.status, second.status)
				assert.Equal(t, "true", second.header.Get(idempotency.HeaderReplayed))
				assert.EqualValues(t, 1, h.runs.Load())
			}
		})
	}
}

func TestMiddlewarePanicReleasesAndRepanics(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "release", true: "keep aborted"}[keep], func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			var runs atomic.Int64
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{KeepAborted: keep})(http.HandlerFunc(
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
			if keep {
				assert.Equal(t, 410, second.Code)
				assert.EqualValues(t, 1, runs.Load())
				return
			}
			assert.Equal(t, 201, second.Code, "the key was released")
			assert.EqualValues(t, 2, runs.Load())
		})
	}
}

func TestMiddlewarePanicThroughServer(t *testing.T) {
	// http.ErrAbortHandler is how a handler aborts a response; the server
	// recovers it silently and closes the connection.
	h := &flaky{fail: func(http.ResponseWriter, int64) bool { panic(http.ErrAbortHandler) }}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	req, _ := http.NewRequest("POST", hs.srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	_, err := hs.cl.Do(req)
	require.Error(t, err)
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased}, hs.decisions())
	_, found, _ := hs.store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
	assert.False(t, found)
}

func TestMiddlewareClientGone(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		keep    bool
		stored  bool
	}{
		{"handler gives up: released", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false, false},
		{"handler gives up, keep aborted", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true, true},
		{"handler finished anyway: stored", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			w.WriteHeader(201)
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{KeepAborted: tt.keep})(tt.handler)
			rctx, cancel := context.WithCancel(context.Background())
			cancel() // the client is gone
			r := httptest.NewRequestWithContext(rctx, "POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(httptest.NewRecorder(), r)
			_, found, _ := store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
			assert.Equal(t, tt.stored, found)
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

func TestMiddlewareLeaseExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			runs      atomic.Int64
			mu        sync.Mutex
			decisions []idempotency.Decision
		)
		wedged := make(chan struct{})
		h := idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{
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

package idempotency_test

// A key is released only when its handler says it did nothing; a slow
// handler keeps its key; informational and upgraded responses are never
// stored as completed records.

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

// TestRelease: a handler that calls Release (here, shedding load before
// doing anything) has its key released, so the retry runs afresh; Release
// works on a request derived from the handler's, and reports false for a
// request the middleware is not running.
func TestRelease(t *testing.T) {
	var runs atomic.Int64
	var released []bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			derived := r.WithContext(context.WithValue(r.Context(), struct{}{}, "inner middleware"))
			released = append(released, idempotency.Release(derived))
			w.Header().Set("Retry-After", "1")
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(201)
	})
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	first := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 503, first.status)
	assert.Equal(t, "overloaded\n", first.body, "the handler's own answer")
	second := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 201, second.status)
	assert.Empty(t, second.header.Get(idempotency.HeaderReplayed), "a fresh run")
	third := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, "true", third.header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 2, runs.Load())
	assert.Equal(t, []bool{true}, released)
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased, idempotency.DecisionExecuted,
		idempotency.DecisionReplayed}, hs.decisions())

	assert.False(t, idempotency.Release(httptest.NewRequest("POST", "/", nil)), "not under the middleware")
}

// TestMiddlewareInformationalNotStored: informational statuses are sent
// but never stored as the response; a 101 Switching Protocols is a
// response whose outcome the middleware cannot know.
func TestMiddlewareInformationalNotStored(t *testing.T) {
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantStatus  int
		wantUnknown bool
	}{
		{"early hints, then 201", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}, 201, false},
		{"processing, then nothing", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusProcessing)
		}, 200, false},
		{"switching protocols", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Upgrade", "websocket")
			w.WriteHeader(http.StatusSwitchingProtocols)
			w.Write([]byte("frames"))
		}, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{Scope: noScope})(tt.handler)
			r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(httptest.NewRecorder(), r)
			rec, found, _ := store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
			require.True(t, found)
			require.NotNil(t, rec.Response)
			assert.Equal(t, tt.wantStatus, rec.Response.Status)
			assert.Equal(t, tt.wantUnknown, rec.Response.OutcomeUnknown)
		})
	}
}

// pipeListener is a net.Listener of in-memory connections (net.Pipe), so
// that a real http.Server and http.Client can run inside a synctest
// bubble, where time is virtual.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects a new client connection to the listener.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// bubbleServer starts an httptest.Server running h on in-memory
// connections, for use inside a synctest bubble, and a client for it.
func bubbleServer(t *testing.T, h http.Handler) (*httptest.Server, *http.Client) {
	l := newPipeListener()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = l
	srv.Start()
	tr := &http.Transport{DialContext: l.dial}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return srv, &http.Client{Transport: tr}
}

// TestMiddlewareHandlerSlowerThanLease: a handler that runs ten times its
// lease keeps its key, because the middleware renews the lease while it
// runs: every repeat meanwhile gets 409, none runs the handler, and the
// response is stored once it is done. Without renewal the repeat after
// the first lease ran the handler a second time.
func TestMiddlewareHandlerSlowerThanLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 30 * time.Second
		var runs atomic.Int64
		store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		srv, cl := bubbleServer(t, idempotency.Middleware(store, idempotency.MiddlewareConfig{Lease: lease, Logger: quiet})(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				time.Sleep(10 * lease)
				w.WriteHeader(201)
				w.Write([]byte("slow order"))
			})))
		post := func() (int, string) {
			req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
			req.Header.Set("Idempotency-Key", "k")
			resp, err := cl.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, resp.Header.Get(idempotency.HeaderReplayed)
		}

		done := make(chan int)
		go func() {
			status, _ := post()
			done <- status
		}()
		synctest.Wait() // the handler is running
		for range 9 {
			time.Sleep(lease)
			status, _ := post()
			assert.Equal(t, 409, status, "the key is still held")
		}
		assert.Equal(t, 201, <-done)
		status, replayed := post()
		assert.Equal(t, 201, status)
		assert.Equal(t, "true", replayed)
		assert.EqualValues(t, 1, runs.Load(), "one run, however slow")
	})
}

// renewCounter is a MemoryStore that counts successful renewals per key
// and signals each one.
type renewCounter struct {
	*idempotency.MemoryStore
	renewed chan string
}

func (s renewCounter) Renew(ctx context.Context, key string, token uint64, lease time.Duration) error {
	err := s.MemoryStore.Renew(ctx, key, token, lease)
	if err == nil {
		s.renewed <- key
	}
	return err
}

// TestMiddlewareSharedRenewal: outside a synctest bubble one timer renews
// every running handler's lease. Three handlers run past their lease in
// real time; each key is renewed, every repeat meanwhile gets 409, and
// once they finish the timer goes idle and a later handler re-arms it.
func TestMiddlewareSharedRenewal(t *testing.T) {
	const lease = time.Second // renewals every 333 ms; a 667 ms stall would lose a lease
	store := renewCounter{idempotency.NewMemoryStore(idempotency.MemoryConfig{}), make(chan string, 64)}
	finish := make(chan struct{})
	release := sync.OnceFunc(func() { close(finish) })
	defer release() // before the server closes, which waits for handlers
	var runs atomic.Int64
	hs := newHarnessOn(t, store, idempotency.MiddlewareConfig{Lease: lease, Scope: noScope}, http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			if r.URL.Path != "/quick" {
				<-finish
			}
			w.WriteHeader(201)
		}))
	keys := []string{"a", "b", "c"}
	done := make(chan result, len(keys))
	for _, k := range keys {
		go func() { done <- hs.do("POST", "/slow", "x", "Idempotency-Key", k) }()
	}
	// Four renewals of each key: more than a lease of real time.
	count := map[string]int{}
	for ready := 0; ready < len(keys); {
		select {
		case k := <-store.renewed:
			count[k]++
			if count[k] == 4 {
				ready++
			}
		case <-time.After(30 * lease):
			t.Fatalf("renewals so far: %v", count)
		}
	}
	for _, k := range keys {
		assert.Equal(t, 409, hs.do("POST", "/slow", "x", "Idempotency-Key", k).status, k)
	}
	release()
	for range keys {
		assert.Equal(t, 201, (<-done).status)
	}
	for _, k := range keys {
		assert.Equal(t, "true", hs.do("POST", "/slow", "x", "Idempotency-Key", k).header.Get(idempotency.HeaderReplayed), k)
	}
	assert.EqualValues(t, 3, runs.Load())

	// Idle now; a quick handler later is served and stored as usual.
	assert.Equal(t, 201, hs.do("POST", "/quick", "x", "Idempotency-Key", "q").status)
	assert.EqualValues(t, 4, runs.Load())
}

// TestMiddlewareRenewalAcrossBubbles: one middleware, made outside any
// bubble, serves slow handlers in two synctest bubbles in turn; each
// bubble's handler keeps its key (no timer crosses a bubble).
func TestMiddlewareRenewalAcrossBubbles(t *testing.T) {
	const lease = 30 * time.Second
	var runs atomic.Int64
	h := idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{Lease: lease, Logger: quiet})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			time.Sleep(5 * lease)
			w.WriteHeader(201)
		}))
	for _, key := range []string{"bubble-1", "bubble-2"} {
		synctest.Test(t, func(t *testing.T) {
			send := func() int {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
				r.Header.Set("Idempotency-Key", key)
				h.ServeHTTP(w, r)
				return w.Code
			}
			done := make(chan int, 1)
			go func() { done <- send() }()
			synctest.Wait()
			time.Sleep(4 * lease)
			assert.Equal(t, 409, send(), "renewed in the bubble's time")
			assert.Equal(t, 201, <-done)
		})
	}
	assert.EqualValues(t, 2, runs.Load())
}

package redisstore_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const lease = 30 * time.Second

// app is the handler behind the middleware: it counts its runs and
// answers 201 with the run number and the body it was sent. before, when
// set, runs first (to hold a request in flight, or to break Redis).
type app struct {
	runs   atomic.Int32
	before func(r *http.Request)
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if a.before != nil {
		a.before(r)
	}
	n := a.runs.Add(1)
	w.Header().Set("X-Run", strconv.Itoa(int(n)))
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, "created "+string(body))
}

// decisions records what a middleware did.
type decisions struct {
	mu   sync.Mutex
	list []idempotency.Decision
}

func (d *decisions) add(_ *http.Request, x idempotency.Decision) {
	d.mu.Lock()
	d.list = append(d.list, x)
	d.mu.Unlock()
}

func (d *decisions) last() idempotency.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.list[len(d.list)-1]
}

// newServer starts a loopback server running a behind the middleware, with
// a store on its own client of the Redis at addr (as a second process would
// have), closed when t ends.
func newServer(t *testing.T, addr string, a *app, d *decisions) *httptest.Server {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1})
	cfg := idempotency.MiddlewareConfig{
		Lease:  lease,
		Logger: slog.New(slog.DiscardHandler),
	}
	if d != nil {
		cfg.OnDecision = d.add
	}
	srv := httptest.NewServer(idempotency.Middleware(redisstore.New(c, redisstore.Config{}), cfg)(a))
	t.Cleanup(func() {
		srv.Close()
		_ = c.Close()
	})
	return srv
}

// reply is what a client saw.
type reply struct {
	status   int
	body     string
	run      string
	replayed string
	retry    string
}

// post sends a POST with key and body to srv.
func post(t *testing.T, srv *httptest.Server, key, body string) reply {
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(body))
	if !assert.NoError(t, err) {
		return reply{}
	}
	req.Header.Set(idempotency.HeaderKey, key)
	// Behind a load balancer every server sees the public host name; the
	// default scope includes it.
	req.Host = "shop.example"
	resp, err := srv.Client().Do(req)
	if !assert.NoError(t, err) {
		return reply{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	assert.NoError(t, err)
	return reply{
		status:   resp.StatusCode,
		body:     string(b),
		run:      resp.Header.Get("X-Run"),
		replayed: resp.Header.Get(idempotency.HeaderReplayed),
		retry:    resp.Header.Get("Retry-After"),
	}
}

func TestMiddlewareReplay(t *testing.T) {
	mr := miniredis.RunT(t)
	var a app
	var d decisions
	srv := newServer(t, mr.Addr(), &a, &d)

	first := post(t, srv, "k1", "apples")
	assert.Equal(t, reply{status: 201, body: "created apples", run: "1"}, first)
	assert.Equal(t, idempotency.DecisionExecuted, d.last())

	again := post(t, srv, "k1", "apples")
	assert.Equal(t, reply{status: 201, body: "created apples", run: "1", replayed: "true"}, again)
	assert.Equal(t, idempotency.DecisionReplayed, d.last())

	other := post(t, srv, "k1", "pears")
	assert.Equal(t, http.StatusUnprocessableEntity, other.status)
	assert.Equal(t, idempotency.DecisionKeyReused, d.last())

	fresh := post(t, srv, "k2", "pears")
	assert.Equal(t, reply{status: 201, body: "created pears", run: "2"}, fresh)
	assert.Equal(t, int32(2), a.runs.Load())

	mr.FastForward(idempotency.DefaultTTL)
	expired := post(t, srv, "k1", "apples")
	assert.Equal(t, reply{status: 201, body: "created apples", run: "3"}, expired, "after the TTL the key is new")
}

// TestMiddlewareSharedAcrossServers sends 50 requests with one key at once,
// alternately to two servers that share Redis: the handler runs once, every
// other request gets 409 while it runs, and both servers replay afterwards.
func TestMiddlewareSharedAcrossServers(t *testing.T) {
	mr := miniredis.RunT(t)
	gate := make(chan struct{})
	var a app
	var entered atomic.Int32
	a.before = func(*http.Request) {
		if entered.Add(1) > 1 {
			t.Error("a second request ran the handler") // and does not wait
			return
		}
		<-gate
	}
	srvs := []*httptest.Server{newServer(t, mr.Addr(), &a, nil), newServer(t, mr.Addr(), &a, nil)}

	const n = 50
	replies := make(chan reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { replies <- post(t, srvs[i%2], "same", "once") })
	}
	for range n - 1 { // every request but the one that holds the key
		r := <-replies
		assert.Equal(t, http.StatusConflict, r.status)
		assert.Equal(t, "1", r.retry)
	}
	close(gate)
	wg.Wait()
	assert.Equal(t, reply{status: 201, body: "created once", run: "1"}, <-replies)
	assert.Equal(t, int32(1), a.runs.Load())

	for _, srv := range srvs {
		r := post(t, srv, "same", "once")
		assert.Equal(t, reply{status: 201, body: "created once", run: "1", replayed: "true"}, r)
	}
}

func TestMiddlewareRedisOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	var a app
	var d decisions
	srv := newServer(t, mr.Addr(), &a, &d)
	require.Equal(t, 201, post(t, srv, "stored", "x").status)

	mr.Close()
	for _, key := range []string{"stored", "new"} {
		r := post(t, srv, key, "x")
		assert.Equal(t, http.StatusServiceUnavailable, r.status, key)
		assert.Equal(t, "1", r.retry, key)
		assert.Equal(t, idempotency.DecisionStoreError, d.last(), key)
	}
	assert.Equal(t, int32(1), a.runs.Load(), "no handler runs while the store is down")

	require.NoError(t, mr.Restart())
	r := post(t, srv, "stored", "x")
	assert.Equal(t, reply{status: 201, body: "created x", run: "1", replayed: "true"}, r, "the stored response survived")
	assert.Equal(t, int32(1), a.runs.Load())
}

// TestMiddlewareOutageWhileRunning breaks Redis while the handler runs: the
// client still gets its response, the reservation stays until its lease
// ends, and a repeat meanwhile gets 409, not a second run.
func TestMiddlewareOutageWhileRunning(t *testing.T) {
	mr := miniredis.RunT(t)
	var a app
	var d decisions
	a.before = func(*http.Request) {
		if a.runs.Load() == 0 {
			mr.Close()
		}
	}
	srv := newServer(t, mr.Addr(), &a, &d)

	r := post(t, srv, "k", "x")
	assert.Equal(t, reply{status: 201, body: "created x", run: "1"}, r, "the response is sent although it cannot be stored")
	assert.Equal(t, idempotency.DecisionLeaseLost, d.last())

	require.NoError(t, mr.Restart())
	r = post(t, srv, "k", "x")
	assert.Equal(t, http.StatusConflict, r.status, "the reservation holds the key")
	assert.Equal(t, int32(1), a.runs.Load())

	mr.FastForward(lease)
	r = post(t, srv, "k", "x")
	assert.Equal(t, reply{status: 201, body: "created x", run: "2"}, r, "after the lease a repeat runs afresh")
}

package faults

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// origin is the server behind the fault: it answers 200 with a body of
// fixed size, counts the requests of each client (by X-Client) and, for
// POST, how many times each call's effect ran (by its body, unique per
// call). While hang is set it holds every request until the request ends
// or hang is cleared, and then drops its connection unanswered.
type origin struct {
	body      []byte
	closeConn bool // answer with Connection: close: one request per connection

	hits   map[string]*atomic.Int64             // by client id; read-only after newOrigin
	hitsAt atomic.Pointer[map[string]*timeBins] // the same by instant, once countHits is called

	hang     atomic.Bool
	mu       sync.Mutex
	released chan struct{} // closed when hang is cleared
	effects  map[string]int
}

func newOrigin(bodyBytes int, closeConn bool) *origin {
	o := &origin{
		body:      bytes.Repeat([]byte{'x'}, bodyBytes),
		closeConn: closeConn,
		hits:      make(map[string]*atomic.Int64),
		released:  make(chan struct{}),
		effects:   make(map[string]int),
	}
	for _, id := range []string{plainID, reboundID, noBreakerID, retryableID, failsafeID} {
		o.hits[id] = new(atomic.Int64)
	}
	return o
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := o.hits[r.Header.Get("X-Client")]; h != nil {
		h.Add(1)
		if at := o.hitsAt.Load(); at != nil {
			(*at)[r.Header.Get("X-Client")].add(time.Now())
		}
	}
	if o.hang.Load() {
		o.mu.Lock()
		released := o.released
		o.mu.Unlock()
		select {
		case <-released:
		case <-r.Context().Done():
		}
		// A request held through the hang never gets its answer: the
		// connection is dropped, so recovery is measured on requests
		// sent after the return.
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	if r.Method == http.MethodPost {
		id, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client or the fault cut the body: no effect
		}
		o.mu.Lock()
		o.effects[string(id)]++
		o.mu.Unlock()
	}
	if o.closeConn {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
	w.Write(o.body)
}

// setHang makes the origin hold requests (true) or release them (false).
func (o *origin) setHang(on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if on == o.hang.Load() {
		return
	}
	o.hang.Store(on)
	if on {
		o.released = make(chan struct{})
	} else {
		close(o.released)
	}
}

// resetHits zeroes the per-client request counts, for a new trial.
func (o *origin) resetHits() {
	for _, h := range o.hits {
		h.Store(0)
	}
}

// countHits makes o count each client's requests by their instant from
// start (see hitsBetween).
func (o *origin) countHits(start time.Time) {
	m := make(map[string]*timeBins, len(o.hits))
	for id := range o.hits {
		m[id] = newTimeBins(start)
	}
	o.hitsAt.Store(&m)
}

// hitsBetween returns the requests of c that reached o in [from, to),
// counted since countHits.
func (o *origin) hitsBetween(c *client, from, to time.Time) int64 {
	return (*o.hitsAt.Load())[c.id].between(from, to)
}

// upstream is the number of requests client c sent that reached the
// origin.
func (o *origin) upstream(c *client) int64 { return o.hits[c.id].Load() }

// duplicates counts the POST calls of client id prefix whose effect ran
// more than once, and the effects in all.
func (o *origin) duplicates(c *client) (dups, effects int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	prefix := c.id + "-"
	for id, n := range o.effects {
		if len(id) > len(prefix) && id[:len(prefix)] == prefix {
			effects += n
			if n > 1 {
				dups++
			}
		}
	}
	return dups, effects
}

// startOrigin serves o on a free 127.0.0.1 port until the test ends.
func startOrigin(t *testing.T, o *origin) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(o)
	t.Cleanup(func() {
		o.setHang(false)
		srv.Close()
	})
	return srv
}

// restartable serves o on one 127.0.0.1 port that it can stop listening on
// (connections are then refused: the upstream is dead) and listen on again.
type restartable struct {
	t    *testing.T
	o    *origin
	addr string
	srv  *httptest.Server // nil while dead
}

func startRestartable(t *testing.T, o *origin) *restartable {
	t.Helper()
	r := &restartable{t: t, o: o}
	r.srv = httptest.NewServer(o)
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() {
		o.setHang(false)
		r.die()
	})
	return r
}

// die closes the listener and every connection.
func (r *restartable) die() {
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// revive listens on the same port again.
func (r *restartable) revive() {
	r.t.Helper()
	if r.srv != nil {
		return
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("upstream cannot listen on %s again: %v", r.addr, err)
	}
	r.srv = httptest.NewUnstartedServer(r.o)
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
}

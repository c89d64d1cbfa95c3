package transport_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run against real servers on 127.0.0.1. Waits are made
// negligible with a 1 ns backoff: timing itself is tested under synctest.
var fast = transport.Config{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}

// newClient returns a client whose retry loop sends through a fresh pooled
// base, closed when the test ends.
func newClient(t *testing.T, cfg transport.Config) *http.Client {
	t.Helper()
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: transport.New(base, cfg)}
}

// flaky answers the statuses in turn (then the last one forever), counting
// hits and recording request bodies.
type flaky struct {
	codes  []int
	hits   atomic.Int64
	mu     sync.Mutex
	bodies []string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, string(b))
	f.mu.Unlock()
	n := int(f.hits.Add(1))
	code := f.codes[min(n, len(f.codes))-1]
	w.WriteHeader(code)
	io.WriteString(w, http.StatusText(code)+" #"+itoa(n))
}

func TestServer503503200SucceedsWithThreeHits(t *testing.T) {
	f := &flaky{codes: []int{503, 503, 200}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	resp, err := newClient(t, fast).Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "OK #3", readBody(t, resp))
	assert.EqualValues(t, 3, f.hits.Load())
}

func TestServerExhaustedReturnsFinal503Readable(t *testing.T) {
	f := &flaky{codes: []int{503}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	resp, err := newClient(t, fast).Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "Service Unavailable #4", readBody(t, resp))
	assert.EqualValues(t, 4, f.hits.Load())
}

func TestServerKeyedPostWithStreamingBodyIsReplayedByteForByte(t *testing.T) {
	f := &flaky{codes: []int{503, 502, 201}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	payload := bytes.Repeat([]byte("payment-line;"), 10_000) // 130 KB, no GetBody
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.MultiReader(bytes.NewReader(payload[:1000]), bytes.NewReader(payload[1000:])))
	req.Header.Set("Idempotency-Key", "order-42")
	require.Nil(t, req.GetBody)
	resp, err := newClient(t, fast).Do(req)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	readBody(t, resp)
	require.Len(t, f.bodies, 3)
	for i, b := range f.bodies {
		assert.True(t, b == string(payload), "attempt %d body differs (%d bytes)", i+1, len(b))
	}
}

// hijacker reads the request, then closes the connection without an
// answer: the request may have been processed, the response is lost.
type hijacker struct{ hits atomic.Int64 }

func (h *hijacker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if h.hits.Add(1) == 1 {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func TestServerUnkeyedPostIsNotRetriedAfterConnectionDropped(t *testing.T) {
	h := &hijacker{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.MultiReader(strings.NewReader("charge=10")))
	_, err := newClient(t, fast).Do(req)
	require.Error(t, err)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 1, te.Attempts)
	assert.EqualValues(t, 1, h.hits.Load(), "a request that may have been processed is not repeated")
}

func TestServerGetIsRetriedAfterConnectionDropped(t *testing.T) {
	h := &hijacker{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := newClient(t, fast).Get(srv.URL)
	require.NoError(t, err)
	readBody(t, resp)
	assert.Equal(t, 201, resp.StatusCode)
	assert.EqualValues(t, 2, h.hits.Load())
}

func TestServerBodyOverLimitIsNotRetried(t *testing.T) {
	f := &flaky{codes: []int{503, 200}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := fast
	cfg.MaxBodyBytes = 4096
	req, _ := http.NewRequest(http.MethodPut, srv.URL, io.MultiReader(strings.NewReader(strings.Repeat("z", 10_000))))
	resp, err := newClient(t, cfg).Do(req)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	readBody(t, resp)
	assert.EqualValues(t, 1, f.hits.Load())
	assert.Len(t, f.bodies[0], 10_000)
}

func TestServerRetriesReuseConnections(t *testing.T) {
	var hits, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, strings.Repeat("try again later. ", 100))
			return
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := newClient(t, fast)
	for i := range 200 {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		require.Equal(t, "ok", readBody(t, resp), "call %d", i)
	}
	assert.EqualValues(t, 400, hits.Load())
	assert.LessOrEqual(t, conns.Load(), int64(2), "discarded responses are drained so connections are reused")
}

func TestServerUntrustedCertificateIsTriedOnce(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = discardLog()
	srv.StartTLS()
	defer srv.Close()
	_, err := newClient(t, fast).Get(srv.URL)
	require.Error(t, err)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 1, te.Attempts)
	assert.Equal(t, classify.ReasonTLS, te.Reason)
	assert.EqualValues(t, 1, conns.Load())
}

func TestServerConnectionRefusedPostIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/pay", strings.NewReader("x"))
	_, err = newClient(t, fast).Do(req)
	var te *transport.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 4, te.Attempts, "a refused connection proves nothing was sent")
	assert.Equal(t, classify.ReasonRefused, te.Reason)
}

func TestServerCallerDeadlineIsNotRetried(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	go func() {
		<-started
		cancel()
	}()
	_, err := newClient(t, fast).Do(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.EqualValues(t, 1, hits.Load())
}

// TestServerStalledRetriedBodyIsCutByAttemptTimeout: the first answer is a
// 503 whose body stops half-way (the handler blocks until the client gives
// up on the connection); the loop reads it for one attempt timeout, drops
// the attempt and succeeds on the next. This test takes one attempt
// timeout of real time (50 ms): the timer under test is real here.
func TestServerStalledRetriedBodyIsCutByAttemptTimeout(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			<-r.Context().Done() // the client closed the connection
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	cfg := fast
	cfg.AttemptTimeout = 50 * time.Millisecond
	resp, err := newClient(t, cfg).Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok", readBody(t, resp))
	assert.EqualValues(t, 2, hits.Load())
}

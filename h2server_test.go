package rebound_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// heldProxy forwards HTTP/2 (prior knowledge) connections frame by frame
// to a backend, holding every frame from the server on the first
// connection until release is called: the client then acts on what it
// knew before the server spoke, the network race that net/http's server
// answers with REFUSED_STREAM, or that opens a stream above a GOAWAY
// already sent. Later connections go to the last backend, unheld.
type heldProxy struct {
	ln       net.Listener
	backends []string // the nth connection goes to backends[min(n, len-1)]
	held     chan struct{}
	once     sync.Once
	// onFrame, when set before the first connection, sees the type and
	// stream of every frame of the first connection as the proxy reads
	// it, from the server (fromServer) or the client.
	onFrame func(fromServer bool, typ http2.FrameType, stream uint32)
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newHeldProxy(t *testing.T, backends ...string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &heldProxy{ln: ln, backends: backends, held: make(chan struct{})}
	p.wg.Go(func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backends[min(n, len(p.backends)-1)])
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			first := n == 0
			p.wg.Go(func() { p.forward(b, c, false, first); b.Close() })
			p.wg.Go(func() { p.forward(c, b, true, first); c.Close() })
		}
	})
	t.Cleanup(func() {
		p.release()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *heldProxy) url() string { return "http://" + p.ln.Addr().String() }

// release lets the server's frames through.
func (p *heldProxy) release() { p.once.Do(func() { close(p.held) }) }

// forward copies frames from src to dst: the client's preface first, and
// on the first connection the server's frames, read as they come, only
// once released.
func (p *heldProxy) forward(dst, src net.Conn, fromServer, first bool) {
	if !fromServer {
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(src, preface); err != nil {
			return
		}
		if _, err := dst.Write(preface); err != nil {
			return
		}
	}
	if first && fromServer {
		// Read on while holding, so the frames are seen as they come.
		queue := make(chan []byte, 1024)
		done := make(chan struct{})
		client := dst
		go func() {
			defer close(done)
			<-p.held
			for frame := range queue {
				if _, err := client.Write(frame); err != nil {
					break
				}
			}
			for range queue {
			}
		}()
		defer func() { close(queue); <-done }()
		dst = queueConn{dst, queue}
	}
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		frame := make([]byte, 9+n)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(src, frame[9:]); err != nil {
			return
		}
		if first && p.onFrame != nil {
			p.onFrame(fromServer, http2.FrameType(hdr[3]), binary.BigEndian.Uint32(hdr[5:9])&(1<<31-1))
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// await waits for ch to close, failing the test after a generous real-time
// guard instead of hanging should net/http stop behaving as the test
// expects (the guard never fires when the test passes).
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("never saw %s", what)
	}
}

// queueConn is a connection whose writes go to a queue.
type queueConn struct {
	net.Conn
	queue chan<- []byte
}

func (q queueConn) Write(b []byte) (int, error) {
	q.queue <- b
	return len(b), nil
}

// TestHTTP2RefusedStreamFromNetHTTPServer uses net/http's own HTTP/2
// server, limited to one stream per connection. The client has not yet
// read the server's SETTINGS, so it opens a second stream, which the
// server refuses (REFUSED_STREAM, its "over_max_streams_race") without
// running the handler. The POST is then sent again and runs once.
func TestHTTP2RefusedStreamFromNetHTTPServer(t *testing.T) {
	for _, rewindable := range []bool{true, false} {
		name := "through the chain"
		if !rewindable {
			name = "body not rewindable, net/http alone"
		}
		t.Run(name, func(t *testing.T) {
			var runs atomic.Int64
			first := make(chan struct{})
			refused := make(chan struct{})
			var refuseOnce sync.Once
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if runs.Add(1) == 1 {
					close(first)
					select { // hold the only stream until the second is refused
					case <-refused:
					case <-r.Context().Done():
					}
				}
				w.WriteHeader(http.StatusCreated)
			}))
			srv.Config.Protocols = new(http.Protocols)
			srv.Config.Protocols.SetUnencryptedHTTP2(true)
			srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1, CountError: func(e string) {
				if strings.HasSuffix(e, "_over_max_streams_race") { // "stream_REFUSED_STREAM_over_max_streams_race"
					refuseOnce.Do(func() { close(refused) })
				}
			}}
			srv.Start()
			defer srv.Close()
			proxy := newHeldProxy(t, srv.Listener.Addr().String())
			go func() { <-refused; proxy.release() }()

			base := h2cBase(t)
			obs, seen := retries()
			var rt http.RoundTripper = rebound.NewTransport(base, rebound.WithRetry(fastRetry), obs)
			errs := make(chan error, 1)
			go func() {
				_, _, err := post(t, rt, context.Background(), proxy.url(), nil)
				errs <- err
			}()
			await(t, first, "the first POST")

			// The second POST; the chain gives its body a GetBody. A
			// guard ends it should the race not happen, instead of
			// hanging (it never fires when the test passes).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, proxy.url()+"/orders", unreplayable(`{"sku":42}`))
			req.ContentLength = int64(len(`{"sku":42}`))
			if !rewindable {
				rt = base
			}
			resp, err := rt.RoundTrip(req)
			refuseOnce.Do(func() { close(refused) })
			require.NoError(t, <-errs, "the first POST")
			if rewindable {
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusCreated, resp.StatusCode)
				assert.EqualValues(t, 2, runs.Load(), "each POST ran once")
				assert.Empty(t, seen(), "net/http sent the refused stream again itself")
				return
			}
			require.Error(t, err)
			t.Logf("net/http: %v", err)
			assert.True(t, classify.NotSent(err), "%v", err)
			assert.Equal(t, classify.Retryable, classify.Classify(req, nil, err).Outcome)
			assert.EqualValues(t, 1, runs.Load(), "the refused POST never ran")
		})
	}
}

// TestHTTP2GoAwayFromNetHTTPServer is a deploy: net/http's HTTP/2 server
// shuts down gracefully while a POST runs, and a second POST opens a
// stream on the same connection before the client has read the GOAWAY.
// The old server ignores that stream (it is above the GOAWAY's last
// stream id); net/http sends it again on a new connection, to the new
// server, and it runs once.
func TestHTTP2GoAwayFromNetHTTPServer(t *testing.T) {
	var oldRuns, newRuns atomic.Int64
	first := make(chan struct{})
	finish := make(chan struct{})
	h2c := func(h http.HandlerFunc) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
		t.Cleanup(srv.Close)
		return srv
	}
	oldSrv := h2c(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if oldRuns.Add(1) == 1 {
			close(first)
			select {
			case <-finish:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusCreated)
	})
	newSrv := h2c(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		newRuns.Add(1)
		w.WriteHeader(http.StatusCreated)
	})
	goAway := make(chan struct{})
	stream3 := make(chan struct{})
	var goAwayOnce, stream3Once sync.Once
	proxy := newHeldProxy(t, oldSrv.Listener.Addr().String(), newSrv.Listener.Addr().String())
	proxy.onFrame = func(fromServer bool, typ http2.FrameType, stream uint32) {
		switch {
		case fromServer && typ == http2.FrameGoAway:
			goAwayOnce.Do(func() { close(goAway) })
		case !fromServer && typ == http2.FrameHeaders && stream == 3:
			stream3Once.Do(func() { close(stream3) })
		}
	}

	obs, seen := retries()
	rt := rebound.NewTransport(h2cBase(t), rebound.WithRetry(fastRetry), obs)
	errs := make(chan error, 2)
	go func() {
		_, _, err := post(t, rt, context.Background(), proxy.url(), nil)
		errs <- err
	}()
	await(t, first, "the first POST")
	shut := make(chan error, 1)
	go func() { shut <- oldSrv.Config.Shutdown(context.Background()) }()
	await(t, goAway, "the GOAWAY") // sent by the old server, not yet seen by the client
	code := make(chan int, 1)
	go func() {
		c, _, err := post(t, rt, context.Background(), proxy.url(), nil)
		code <- c
		errs <- err
	}()
	await(t, stream3, "stream 3") // the second POST is on the old connection, above the GOAWAY
	proxy.release()
	close(finish)

	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	assert.Equal(t, http.StatusCreated, <-code)
	require.NoError(t, <-shut)
	assert.EqualValues(t, 1, oldRuns.Load(), "the old server ran only the first POST")
	assert.EqualValues(t, 1, newRuns.Load(), "the second POST ran once, on the new server")
	assert.Empty(t, seen(), "net/http sent it again itself")
}

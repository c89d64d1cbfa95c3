package rebound_test

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
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldProxy forwards HTTP/2 (prior knowledge) connections frame by frame
// to a backend, holding every frame from the server until release is
// called: the client then acts on what it knew before the server spoke,
// the network race that net/http's server answers with REFUSED_STREAM.
type heldProxy struct {
	ln      net.Listener
	backend string
	held    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newHeldProxy(t *testing.T, backend string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &heldProxy{ln: ln, backend: backend, held: make(chan struct{})}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(b, c); b.Close() })
			p.wg.Go(func() { p.forwardHeld(c, b); c.Close() })
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

// forwardHeld copies the server's frames to the client once released.
func (p *heldProxy) forwardHeld(client, server net.Conn) {
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(server, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		frame := make([]byte, 9+n)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(server, frame[9:]); err != nil {
			return
		}
		<-p.held
		if _, err := client.Write(frame); err != nil {
			return
		}
	}
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
			<-first

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

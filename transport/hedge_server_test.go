package transport_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeSignal wraps a base so that every response body's Close is
// signalled, for a test that must know a loser was drained.
type closeSignal struct {
	next   http.RoundTripper
	closed chan struct{}
}

func (c *closeSignal) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil {
		resp.Body = &signalBody{ReadCloser: resp.Body, closed: c.closed}
	}
	return resp, err
}

type signalBody struct {
	io.ReadCloser
	once   sync.Once
	closed chan struct{}
}

func (b *signalBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.closed <- struct{}{} })
	return err
}

// countConns makes srv count the connections it accepts.
func countConns(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A loser that answers soon after the winner (within the grace) is
// drained and closed, so its keep-alive connection goes back to the pool:
// over several hedged calls the client opens two connections, the first
// call's, and no more. Without draining, every call would cost one.
func TestHedgeLosersConnectionsReused(t *testing.T) {
	hedgeDone := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Attempt") == "1" {
			// Slow: answer only once the hedge has been answered.
			select {
			case <-hedgeDone:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "first")
			return
		}
		io.WriteString(w, "hedge")
		w.(http.Flusher).Flush()
		hedgeDone <- struct{}{}
	}))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	sig := &closeSignal{next: base, closed: make(chan struct{}, 4)}
	client := &http.Client{Transport: transport.New(sig, transport.Config{
		AttemptHeader: "X-Attempt",
		Hedge:         &transport.HedgeConfig{Delay: 200 * time.Millisecond},
	})}
	const calls = 4
	for i := range calls {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		// The first attempt answers only after the hedge was answered,
		// so a hedge was sent; either may reach the client first.
		assert.Contains(t, []string{"first", "hedge"}, string(body), "call %d", i)
		waitFor(t, sig.closed, "the winner's body closed")
		waitFor(t, sig.closed, "the loser drained and closed")
	}
	assert.Equal(t, int64(2), conns.Load(), "the two connections of the first call serve every call")
}

// A loser still waiting after the grace is cancelled: the server sees its
// request end, and nothing is left running (goleak checks the package).
func TestHedgeLoserCancelledAtServer(t *testing.T) {
	loserGone := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Attempt") == "1" {
			<-r.Context().Done()
			loserGone <- struct{}{}
			return
		}
		io.WriteString(w, "hedge")
	}))
	defer srv.Close()
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: transport.New(base, transport.Config{
		AttemptHeader: "X-Attempt",
		Hedge:         &transport.HedgeConfig{Delay: 20 * time.Millisecond},
	})}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "hedge", string(body))
	waitFor(t, loserGone, "the loser's request to end at the server")
}

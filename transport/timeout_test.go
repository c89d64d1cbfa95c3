package transport_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hungServer accepts requests and never answers them: each handler waits
// until the client gives up on its connection.
func hungServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestTimeoutsAreNetErrorTimeouts: every way a call through the loop runs
// out of time reads as a timeout to os.IsTimeout and net.Error, as it does
// with a bare client. *url.Error asks its direct cause, the *Error. Each
// row waits out a real 20 ms timeout against a hung loopback server.
func TestTimeoutsAreNetErrorTimeouts(t *testing.T) {
	srv := hungServer(t)
	const d = 20 * time.Millisecond
	cases := map[string]func() (*http.Client, context.Context){
		"context deadline": func() (*http.Client, context.Context) {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			t.Cleanup(cancel)
			return newClient(t, fast), ctx
		},
		"ResponseHeaderTimeout": func() (*http.Client, context.Context) {
			base := cleanhttp.DefaultPooledTransport()
			base.ResponseHeaderTimeout = d
			t.Cleanup(base.CloseIdleConnections)
			cfg := fast
			cfg.MaxAttempts = 2
			return &http.Client{Transport: transport.New(base, cfg)}, context.Background()
		},
		"AttemptTimeout": func() (*http.Client, context.Context) {
			cfg := fast
			cfg.MaxAttempts = 2
			cfg.AttemptTimeout = d
			return newClient(t, cfg), context.Background()
		},
		"http.Client.Timeout": func() (*http.Client, context.Context) {
			c := newClient(t, fast)
			c.Timeout = d
			return c, context.Background()
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			client, ctx := setup()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			_, err := client.Do(req)
			require.Error(t, err)
			assert.True(t, os.IsTimeout(err), "os.IsTimeout(%v)", err)
			ne, ok := err.(net.Error)
			require.True(t, ok, "%T is a net.Error", err)
			assert.True(t, ne.Timeout())
		})
	}
}

// TestClientTimeoutGivesOneReason: around a RoundTripper it does not know,
// http.Client.Timeout ends a call both through the request context's
// deadline and by closing req.Cancel from its own timer, in either order.
// Whichever comes first, the loop reports the same stop, reason and cause.
// (net/http itself then adds "(Client.Timeout exceeded ...)" to the message
// only when its timer came first.) Each call waits out a real 10 ms.
func TestClientTimeoutGivesOneReason(t *testing.T) {
	srv := hungServer(t)
	client := newClient(t, fast)
	client.Timeout = 10 * time.Millisecond
	for i := range 40 {
		_, err := client.Get(srv.URL)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "rebound: 1 attempt, "+transport.WhyCallerDeadline+" (deadline exceeded): context deadline exceeded", "call %d", i)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
		assert.True(t, os.IsTimeout(err), "call %d", i)
	}
}

package rebound_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestChainUpgradeKeepsTheConnection: a 101 Switching Protocols answer
// comes through the whole chain (keys, loop, budget, breaker) with its
// io.ReadWriteCloser body, as WebSocket clients built on http.Client need,
// with the attempt timeout of the sample policy file and without one. The
// server hijacks the connection and echoes.
func TestChainUpgradeKeepsTheConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		io.Copy(conn, rw)
	}))
	defer srv.Close()
	for name, retry := range map[string]transport.Config{
		"attempt timeout":    {AttemptTimeout: 2 * time.Second},
		"no attempt timeout": {},
	} {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: newTransport(t, rebound.WithPolicy(rebound.Policy{Retry: retry}))}
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			require.True(t, ok, "a 101's body is an io.ReadWriteCloser (got %T)", resp.Body)
			br := bufio.NewReader(rwc)
			for _, msg := range []string{"ping\n", "pong\n"} {
				_, err := io.WriteString(rwc, msg)
				require.NoError(t, err)
				got, err := br.ReadString('\n')
				require.NoError(t, err)
				assert.Equal(t, msg, got)
			}
		})
	}
}

package transport_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoUpgrade answers "Upgrade: echo" with 101 Switching Protocols, then
// echoes every byte on the hijacked connection until the client closes it,
// the way a WebSocket server takes over its connection.
func echoUpgrade(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		io.Copy(conn, rw) // echo until the client closes
	}))
	t.Cleanup(srv.Close)
	return srv
}

// upgrade makes an upgrade request through client and checks that the
// 101's body is the connection, readable and writable both ways.
func upgrade(t *testing.T, client *http.Client, url string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "a 101's body is an io.ReadWriteCloser (got %T)", resp.Body)
	br := bufio.NewReader(rwc)
	for _, msg := range []string{"hello\n", "again\n"} {
		_, err = io.WriteString(rwc, msg)
		require.NoError(t, err)
		got, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, msg, got)
	}
}

// TestSwitchingProtocolsKeepsTheConnection: a 101 keeps its
// io.ReadWriteCloser body, with or without an AttemptTimeout, so
// WebSocket clients built on http.Client work through the loop. With an
// attempt timeout the connection outlives it.
func TestSwitchingProtocolsKeepsTheConnection(t *testing.T) {
	srv := echoUpgrade(t)
	for name, cfg := range map[string]transport.Config{
		"no attempt timeout": fast,
		"attempt timeout":    {BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond, AttemptTimeout: time.Minute},
	} {
		t.Run(name, func(t *testing.T) { upgrade(t, newClient(t, cfg), srv.URL) })
	}
}

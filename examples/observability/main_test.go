package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Two 503s are retried and the third call gives up after 4 attempts: the
// log has a line for each retry and the give-up, without the query
// string; Stats and /debug/vars count the same.
func TestRun(t *testing.T) {
	srv := server(2)
	defer srv.Close()
	var out bytes.Buffer
	s, err := run(&out, srv.URL, reboundtest.NoWait())
	require.NoError(t, err)
	log := out.String()

	assert.Equal(t, 5, strings.Count(log, `msg="rebound: retry"`), log)
	assert.Equal(t, 1, strings.Count(log, `msg="rebound: give up"`), log)
	assert.Contains(t, log, "path=/v1/quote")
	assert.NotContains(t, log, "secret")
	assert.Contains(t, log, "GET /v1/quote: 200\nGET /v1/quote: 200\n")
	assert.Contains(t, log, "GET /v1/down: 503\n")

	require.Len(t, s.Hosts, 1)
	h := s.Hosts[0]
	assert.Equal(t, uint64(3), h.Calls)
	assert.Equal(t, uint64(3+1+4), h.Attempts)
	assert.Equal(t, map[string]uint64{"status 503": 5}, h.Retries)
	assert.Equal(t, map[string]uint64{transport.StopAttempts: 1}, h.GiveUps)
	assert.Contains(t, log, "/debug/vars rebound: 3 calls, 8 attempts\n")
}

package main

import (
	"bytes"
	"testing"

	"github.com/rebound-http/rebound/reboundtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every rule and per-call setting shows in what the caller got and in
// what the server saw.
func TestRun(t *testing.T) {
	s := startServer()
	defer s.close()
	var out bytes.Buffer
	got, err := run(&out, s.srv.URL, reboundtest.NoWait())
	require.NoError(t, err)
	type want struct {
		status, attempts, hits int
		body                   string
	}
	wants := map[string]want{
		"pending job polled":  {200, 3, 3, `{"status":"done","rows":1200}`},
		"403 X-Retryable":     {201, 2, 2, `{"export":"e-1"}`},
		"reports not retried": {503, 1, 1, "unavailable"},
		"Attempts 2":          {503, 2, 2, "unavailable"},
		"NoRetry":             {503, 1, 1, "unavailable"},
		"AttemptTimeout":      {200, 2, 2, "fast this time"},
		"NoKey":               {201, 1, 1, ""},
	}
	require.Len(t, got, len(wants))
	for _, c := range got {
		w := wants[c.Name]
		assert.Equal(t, w.status, c.Status, c.Name)
		assert.Equal(t, w.attempts, c.Attempts, c.Name)
		assert.Equal(t, w.hits, s.hitsOf(c.Path), c.Name)
		assert.Equal(t, w.body, c.Body, c.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	assert.Empty(t, s.keys["/v1/legacy"], "NoKey: no generated key")
	assert.Len(t, s.keys["/v1/exports"], 36, "other POSTs keep theirs")
}

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

// Two 503s are retried; the caller gets the 200 and its body.
func TestRun(t *testing.T) {
	srv := flakyServer(2)
	defer srv.Close()
	var out bytes.Buffer
	res, err := run(&out, srv.URL, reboundtest.NoWait())
	require.NoError(t, err)
	assert.Equal(t, result{Status: 200, Body: `{"quote":"hello"}`, Attempts: 3}, res)
	assert.Equal(t, "200 {\"quote\":\"hello\"} after 3 attempts\n", out.String())
}

// A server that never recovers: the caller gets its last 503, readable,
// after the default 4 attempts.
func TestRunGivesUp(t *testing.T) {
	srv := flakyServer(100)
	defer srv.Close()
	var out bytes.Buffer
	res, err := run(&out, srv.URL, reboundtest.NoWait())
	require.NoError(t, err)
	assert.Equal(t, 503, res.Status)
	assert.Equal(t, "try again\n", res.Body)
	assert.Equal(t, 4, res.Attempts)
}

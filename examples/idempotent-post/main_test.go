package main

import (
	"bytes"
	"testing"

	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The lost response is retried with the same key and answered from the
// server's record: one order, two requests, the caller gets the 201.
func TestLostResponseRetriedWithoutDuplicate(t *testing.T) {
	s := startShop()
	defer s.close()
	var out bytes.Buffer
	res, err := run(&out, s.srv.URL, true, reboundtest.NoWait())
	require.NoError(t, err)
	require.NoError(t, res.Err)
	assert.Equal(t, 201, res.Status)
	assert.Equal(t, `{"order":1}`, res.Body)
	assert.True(t, res.Replayed, "the retry is answered from the record")
	assert.Equal(t, 2, res.Attempts)
	assert.EqualValues(t, 2, s.hits.Load())
	assert.EqualValues(t, 1, s.orders.Load(), "no duplicate order")
}

// Without the host's declaration, the chain does not repeat the POST: the
// caller gets the error, and the order exists once.
func TestWithoutKeysHonoredNotRepeated(t *testing.T) {
	s := startShop()
	defer s.close()
	var out bytes.Buffer
	res, err := run(&out, s.srv.URL, false, reboundtest.NoWait())
	require.NoError(t, err)
	require.Error(t, res.Err)
	assert.ErrorIs(t, res.Err, transport.ErrFinal)
	assert.EqualValues(t, 1, s.hits.Load())
	assert.EqualValues(t, 1, s.orders.Load())
}

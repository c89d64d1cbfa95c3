package idempotency_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/idempotency"
)

// The zero Transport fails every request with a clear error, unsent; it
// never panics.
func TestZeroTransportFailsClearly(t *testing.T) {
	var rt idempotency.Transport
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
	var resp *http.Response
	var err error
	require.NotPanics(t, func() { resp, err = rt.RoundTrip(req) })
	assert.Nil(t, resp)
	require.ErrorIs(t, err, idempotency.ErrNoNext)
}

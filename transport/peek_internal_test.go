package transport

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// PeekBody keeps the loop's cancelBody outermost, so that closing the
// restored body still ends the attempt's context, and the loop's buffering
// of a retried response still finds it to bound with AttemptTimeout.
func TestPeekBodyKeepsCancelBody(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cb := &cancelBody{ReadCloser: io.NopCloser(strings.NewReader("pending, then more")), cancel: cancel}
	resp := &http.Response{StatusCode: 200, Body: cb}
	b, err := PeekBody(resp, 7)
	require.NoError(t, err)
	assert.Equal(t, "pending", string(b))
	assert.Same(t, cb, resp.Body)
	all, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "pending, then more", string(all))
	assert.NoError(t, ctx.Err())
	require.NoError(t, resp.Body.Close())
	assert.Error(t, ctx.Err(), "closing the body ends the attempt's context")
}

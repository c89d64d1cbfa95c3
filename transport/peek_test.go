package transport_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeekBody(t *testing.T) {
	broken := errors.New("read: connection reset (test)")
	for _, c := range []struct {
		name     string
		body     io.Reader
		n        int64
		peeked   string
		peekErr  error
		whole    string
		wholeErr error
	}{
		{"shorter than n", strings.NewReader("hello"), 64, "hello", nil, "hello", nil},
		{"exactly n", strings.NewReader("hello"), 5, "hello", nil, "hello", nil},
		{"longer than n", strings.NewReader("hello, world"), 5, "hello", nil, "hello, world", nil},
		{"empty", strings.NewReader(""), 5, "", nil, "", nil},
		{"n zero", strings.NewReader("hello"), 0, "", nil, "hello", nil},
		{"read error", io.MultiReader(strings.NewReader("hel"), errorReader{broken}), 64, "hel", broken, "hel", broken},
		{"read error after n", io.MultiReader(strings.NewReader("hello"), errorReader{broken}), 3, "hel", nil, "hello", broken},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := &trackedBody{Reader: c.body}
			resp := &http.Response{StatusCode: 200, Body: tb}
			b, err := transport.PeekBody(resp, c.n)
			assert.Equal(t, c.peeked, string(b))
			assert.ErrorIs(t, err, c.peekErr)
			if c.peekErr == nil {
				assert.NoError(t, err)
			}
			whole, err := io.ReadAll(resp.Body)
			assert.Equal(t, c.whole, string(whole))
			if c.wholeErr == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, c.wholeErr)
			}
			assert.False(t, tb.isClosed())
			require.NoError(t, resp.Body.Close())
			assert.True(t, tb.isClosed(), "closing the restored body closes the original")
		})
	}
}

// A second peek sees the body from its start, and may look further.
func TestPeekBodyTwice(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("abcdefgh"))}
	b, err := transport.PeekBody(resp, 3)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(b))
	b, err = transport.PeekBody(resp, 6)
	require.NoError(t, err)
	assert.Equal(t, "abcdef", string(b))
	assert.Equal(t, "abcdefgh", readBody(t, resp))
}

// Responses without a message body are left alone.
func TestPeekBodyNothingToRead(t *testing.T) {
	b, err := transport.PeekBody(nil, 10)
	assert.Nil(t, b)
	assert.NoError(t, err)

	resp := &http.Response{StatusCode: 204, Body: http.NoBody}
	b, err = transport.PeekBody(resp, 10)
	assert.Nil(t, b)
	assert.NoError(t, err)
	assert.Equal(t, http.NoBody, resp.Body)

	conn := &trackedBody{Reader: strings.NewReader("raw bytes")}
	up := &http.Response{StatusCode: http.StatusSwitchingProtocols, Body: conn}
	b, err = transport.PeekBody(up, 10)
	assert.Nil(t, b)
	assert.ErrorIs(t, err, transport.ErrPeekUpgrade)
	assert.Same(t, conn, up.Body)
}

package pgstore

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeaderRoundTrip(t *testing.T) {
	for name, h := range map[string]http.Header{
		"nil":      nil,
		"empty":    {},
		"one":      {"Content-Type": {"text/plain"}},
		"many":     {"A": {"1", "2"}, "B": {""}, "C": {}},
		"any byte": {"X": {"\x00\x01\xff\r\n"}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeHeader(encodeHeader(h))
			require.NoError(t, err)
			assert.Equal(t, h, got)
		})
	}
}

func TestDecodeHeaderMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          {},
		"count too high": {5},
		"truncated name": {1, 4, 'a'},
		"no value count": {1, 1, 'a'},
		"short value":    {1, 1, 'a', 1, 3, 'x'},
		"trailing bytes": {0, 0},
		"bad varint":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"duplicate name": {2, 1, 'a', 0, 1, 'a', 0},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeHeader(b)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
}

// FuzzDecodeHeader checks that decoding never panics, and that whatever
// decodes encodes back to bytes that decode to the same header.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(encodeHeader(http.Header{"Content-Type": {"text/plain"}, "X": {"a", "b"}}))
	f.Add([]byte{0})
	f.Add([]byte{1, 1, 'a', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		again, err := decodeHeader(encodeHeader(h))
		require.NoError(t, err)
		assert.Equal(t, h, again)
	})
}

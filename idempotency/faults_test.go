package idempotency_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMiddlewareEmptyMethods: an empty, non-nil Methods honours no
// method's keys (as Config.Methods on the client), rather than falling
// back to POST and PATCH.
func TestMiddlewareEmptyMethods(t *testing.T) {
	h := &created{}
	hs := newHarness(t, idempotency.MiddlewareConfig{Methods: []string{}}, h)
	for range 2 {
		r := hs.do("POST", "/", "x", "Idempotency-Key", "k")
		assert.Equal(t, 201, r.status)
		assert.Empty(t, r.header.Get(idempotency.HeaderReplayed))
	}
	assert.EqualValues(t, 2, h.runs.Load(), "no method is deduplicated")
}

// errClosed is what bodyCloser's Close returns after the first call.
var errClosed = errors.New("closed twice")

// bodyCloser is a response body that records whether it was closed.
type bodyCloser struct {
	io.Reader
	closed bool
}

func (b *bodyCloser) Close() error {
	if b.closed {
		return errClosed
	}
	b.closed = true
	return nil
}

// TestTransportResponseAndError: a Next that returns both a response and an
// error (a broken RoundTripper) gives the caller the error alone, as
// RoundTrip promises, and the response's body is closed, since http.Client
// would drop it unclosed.
func TestTransportResponseAndError(t *testing.T) {
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			body := &bodyCloser{Reader: strings.NewReader("lost")}
			boom := errors.New("boom")
			rt := idempotency.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Body: body, Request: r}, boom
			}), idempotency.Config{})
			req := httptest.NewRequest(method, "http://example.test/", nil)
			resp, err := rt.RoundTrip(req)
			assert.Nil(t, resp)
			assert.ErrorIs(t, err, boom)
			assert.True(t, body.closed, "the dropped response's body is closed")
		})
	}
}

// TestMemoryStoreChurn runs random reservations, completions, releases and
// expiries against small bounds: the bounds hold throughout (but for the
// few bytes of a response kept as NotReplayable when in-flight keys fill
// the store), and once every record has expired the store is empty, its
// byte count back to zero.
func TestMemoryStoreChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxBytes = 8 << 10
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 16, MaxBytes: maxBytes})
		rng := rand.New(rand.NewPCG(1, 2))
		tokens := map[string]uint64{}
		for range 5000 {
			k := strconv.Itoa(rng.IntN(40))
			switch tok, held := tokens[k]; {
			case !held:
				rec, reserved, err := s.Reserve(ctx, k, fp(1), time.Duration(1+rng.IntN(5))*time.Second)
				if err == nil && reserved {
					tokens[k] = rec.Token
				}
			case rng.IntN(4) == 0:
				_ = s.Release(ctx, k, tok)
				delete(tokens, k)
			default:
				body := make([]byte, rng.IntN(3000))
				_ = s.Complete(ctx, k, tok, &idempotency.Response{Status: 200, Body: body}, time.Duration(rng.IntN(10))*time.Second)
				delete(tokens, k)
			}
			require.LessOrEqual(t, s.Len(), 16)
			require.LessOrEqual(t, s.Bytes(), int64(maxBytes+16*64))
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		time.Sleep(time.Minute)
		assert.Zero(t, s.Len())
		assert.Zero(t, s.Bytes())
	})
}

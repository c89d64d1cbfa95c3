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

// TestMemoryStoreNoFutileEviction: when a new key or a response cannot fit
// even with every completed record gone (the in-flight ones alone fill the
// store), nothing is evicted. Evicting would free those keys for a second
// run of their handlers and gain nothing.
func TestMemoryStoreNoFutileEviction(t *testing.T) {
	big := make([]byte, 1500)
	tests := []struct {
		name string
		cfg  idempotency.MemoryConfig
		// act fills the rest of the store and does the operation that
		// cannot fit.
		act func(t *testing.T, s *idempotency.MemoryStore)
	}{
		{
			name: "response larger than the store",
			cfg:  idempotency.MemoryConfig{MaxBytes: 4096},
			act: func(t *testing.T, s *idempotency.MemoryStore) {
				rec, _, err := s.Reserve(ctx, "huge", fp(1), time.Minute)
				require.NoError(t, err)
				require.NoError(t, s.Complete(ctx, "huge", rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, 8192)}, time.Hour))
				got, _, _ := s.Lookup(ctx, "huge")
				assert.True(t, got.Response.NotReplayable, "kept without its body")
			},
		},
		{
			name: "bytes: in-flight keys fill the store",
			cfg:  idempotency.MemoryConfig{MaxBytes: 4096},
			act: func(t *testing.T, s *idempotency.MemoryStore) {
				_, _, err := s.Reserve(ctx, strings.Repeat("x", 500), fp(1), time.Minute)
				require.NoError(t, err)
				_, _, err = s.Reserve(ctx, strings.Repeat("y", 3500), fp(1), time.Minute)
				assert.ErrorIs(t, err, idempotency.ErrStoreFull)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := idempotency.NewMemoryStore(tt.cfg)
			for i := range 2 {
				k := strconv.Itoa(i)
				rec, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
				require.NoError(t, err)
				require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 200, Body: big}, time.Hour))
			}
			tt.act(t, s)
			_, found, _ := s.Lookup(ctx, "1")
			assert.True(t, found, "the newest completed record is still there")
			assert.LessOrEqual(t, s.Bytes(), tt.cfg.MaxBytes)
		})
	}
}

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

package idempotency_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// WithoutKey stops the generated key of one call (and of calls with a
// derived context); a key given with WithKey, or set on the request, still
// goes out, and other calls still get theirs.
func TestWithoutKey(t *testing.T) {
	derived, cancel := context.WithCancel(idempotency.WithoutKey(context.Background()))
	defer cancel()
	for _, c := range []struct {
		name   string
		ctx    context.Context
		header string
		want   string // "" no key, "new" a generated one, else this key
	}{
		{"plain", context.Background(), "", "new"},
		{"without key", idempotency.WithoutKey(context.Background()), "", ""},
		{"derived", derived, "", ""},
		{"WithKey still goes", idempotency.WithKey(idempotency.WithoutKey(context.Background()), "k-1"), "", "k-1"},
		{"caller's header stays", idempotency.WithoutKey(context.Background()), "k-2", "k-2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &stub{}
			rt := idempotency.NewTransport(s, idempotency.Config{})
			req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, "http://api.test/orders", strings.NewReader("{}"))
			require.NoError(t, err)
			if c.header != "" {
				req.Header.Set("Idempotency-Key", c.header)
			}
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			got := idempotency.ResponseKey(resp)
			switch c.want {
			case "":
				assert.Empty(t, got)
				assert.Same(t, req, s.last(), "a request without a key is not copied")
			case "new":
				assert.Len(t, got, 36)
			default:
				assert.Equal(t, c.want, got)
			}
		})
	}
}

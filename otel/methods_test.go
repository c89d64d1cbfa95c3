package reboundotel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	reboundotel "github.com/rebound-http/rebound/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestMethodNames: the methods the semantic conventions know by default,
// QUERY (RFC 10008) among them, are reported as themselves in the span
// name, http.request.method and the duration metric; any other method is
// "_OTHER" with its original, on a span named "HTTP"; Config.KnownMethods
// replaces the list.
func TestMethodNames(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()

	for _, row := range []struct {
		name     string
		known    []string
		method   string
		span     string // the span's name
		attr     string // http.request.method
		original string // http.request.method_original, "" when absent
	}{
		{"GET", nil, http.MethodGet, "GET", "GET", ""},
		{"empty is GET", nil, "", "GET", "GET", ""},
		{"QUERY", nil, "QUERY", "QUERY", "QUERY", ""},
		{"PATCH", nil, http.MethodPatch, "PATCH", "PATCH", ""},
		{"unknown", nil, "PROPFIND", "HTTP", "_OTHER", "PROPFIND"},
		{"lower case is not known", nil, "query", "HTTP", "_OTHER", "query"},
		{"added", []string{"GET", "PROPFIND"}, "PROPFIND", "PROPFIND", "PROPFIND", ""},
		{"the list replaces the default", []string{"GET", "PROPFIND"}, "QUERY", "HTTP", "_OTHER", "QUERY"},
	} {
		t.Run(row.name, func(t *testing.T) {
			h := newHarness()
			h.cfg.KnownMethods = row.known
			in, err := reboundotel.NewInstrumentation(h.cfg)
			require.NoError(t, err)
			base := in.Base(nil)
			defer base.(interface{ CloseIdleConnections() }).CloseIdleConnections()

			req, err := http.NewRequestWithContext(context.Background(), row.method, srv.URL, strings.NewReader("q"))
			require.NoError(t, err)
			resp, err := base.RoundTrip(req)
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()

			ended := h.spans.Ended()
			require.Len(t, ended, 1)
			assert.Equal(t, row.span, ended[0].Name())
			a := attrs(ended[0].Attributes())
			assert.Equal(t, row.attr, a["http.request.method"])
			if row.original == "" {
				assert.NotContains(t, a, "http.request.method_original")
			} else {
				assert.Equal(t, row.original, a["http.request.method_original"])
			}

			hist, ok := h.metric(t, "http.client.request.duration").(metricdata.Histogram[float64])
			require.True(t, ok)
			require.Len(t, hist.DataPoints, 1)
			m, _ := hist.DataPoints[0].Attributes.Value("http.request.method")
			assert.Equal(t, row.attr, m.Emit())
		})
	}
}

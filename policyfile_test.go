package rebound_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadPolicyFileRoutesHosts(t *testing.T) {
	opts, err := rebound.LoadPolicyFile(filepath.Join("testdata", "policies.json"))
	require.NoError(t, err)
	base := &countingBase{hits: map[string]int{}}
	rt := rebound.NewTransport(base, opts...)
	tests := []struct {
		name, method, url string
		status            int
		wantHits          int
		wantKey           bool
	}{
		{"default: 3 attempts", http.MethodGet, "http://api.example.com/", 502, 3, false},
		{"payments: 2 attempts", http.MethodGet, "http://payments.example.com/", 503, 2, false},
		{"payments: 502 is not retryable there", http.MethodGet, "http://payments.example.com/x", 502, 1, false},
		{"legacy: POST gets no key, so no retry", http.MethodPost, "http://billing.legacy.internal/", 502, 1, false},
		{"default: POST gets a key, which licenses no retry", http.MethodPost, "http://orders.example.com/", 502, 1, true},
	}
	for _, tt := range tests {
		// Virtual time: the file's real backoff costs no wall-clock time.
		synctest.Test(t, func(t *testing.T) {
			base.reset(tt.status)
			req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(""))
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.wantHits, base.count(req.URL.Host+req.URL.Path), tt.name)
			assert.Equal(t, tt.wantKey, idempotency.ResponseKey(resp) != "", tt.name)
		})
	}
}

func TestParsePolicyFileErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"not JSON", `{`, "unexpected EOF"},
		{"unknown field", `{"default": {"max_attempt": 3}}`, `unknown field "max_attempt"`},
		{"negative attempts", `{"default": {"max_attempts": -1}}`, "max_attempts -1 is negative"},
		{"duration as number", `{"default": {"base_delay": 100}}`, "duration must be a string"},
		{"bad duration", `{"default": {"base_delay": "fast"}}`, `invalid duration "fast"`},
		{"negative duration", `{"default": {"max_delay": "-1s"}}`, `negative duration "-1s"`},
		{"bad status", `{"hosts": {"a.example": {"retryable_statuses": [99]}}}`, `host "a.example": retryable status 99`},
		{"bad pattern", `{"hosts": {"http://a/": {}}}`, `invalid host pattern "http://a/"`},
		{"rate over 1", `{"default": {"breaker_failure_rate": 1.5}}`, "breaker_failure_rate 1.5"},
		{"trailing data", `{} {}`, "data after the JSON object"},
		{"too large", `{"hosts": {` + strings.Repeat(" ", 1<<20) + `}}`, "over the 1048576-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rebound.ParsePolicyFile([]byte(tt.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadPolicyFileMissing(t *testing.T) {
	_, err := rebound.LoadPolicyFile(filepath.Join(t.TempDir(), "nope.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func FuzzParsePolicyFile(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "policies.json"))
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte(`{"default": {"base_delay": "1h"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := rebound.ParsePolicyFile(data)
		if err != nil {
			return
		}
		// A file that parses always builds a working chain. The base
		// answers 200, so no policy's backoff is ever waited for.
		rt := rebound.NewTransport(&countingBase{status: http.StatusOK, hits: map[string]int{}}, opts...)
		req, _ := http.NewRequest(http.MethodGet, "http://fuzz.example/", nil)
		if _, err := rt.RoundTrip(req); err != nil && strings.Contains(err.Error(), "invalid host pattern") {
			t.Fatalf("accepted file built a failing chain: %v", err)
		}
	})
}

package classify_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rebound-http/rebound/classify"
)

func TestIdempotentMethod(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{"", true}, // the empty method means GET
		{http.MethodGet, true},
		{http.MethodHead, true},
		{http.MethodOptions, true},
		{http.MethodTrace, true},
		{http.MethodPut, true},
		{http.MethodDelete, true},
		{classify.MethodQuery, true}, // RFC 10008
		{"query", false},
		{http.MethodPost, false},
		{http.MethodPatch, false},
		{http.MethodConnect, false},
		{"PROPFIND", false},
		{"get", false}, // methods are case-sensitive (RFC 9110 §9.1)
		{"Put", false},
		{" GET", false},
	}
	for _, tt := range tests {
		t.Run("method="+tt.method, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.IdempotentMethod(tt.method))
		})
	}
}

func TestHasIdempotencyKey(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"nil", nil, false},
		{"empty", http.Header{}, false},
		{"unrelated headers", http.Header{"Content-Type": {"application/json"}, "Idempotency": {"k"}}, false},
		{"Idempotency-Key", http.Header{"Idempotency-Key": {"k-1"}}, true},
		{"X-Idempotency-Key", http.Header{"X-Idempotency-Key": {"k-1"}}, true},
		{"both", http.Header{"Idempotency-Key": {"a"}, "X-Idempotency-Key": {"b"}}, true},
		// Presence counts, as in Go's own transport (isReplayable).
		{"empty value", http.Header{"Idempotency-Key": {""}}, true},
		{"nil value slice", http.Header{"Idempotency-Key": nil}, true},
		// Only canonical keys are looked up, as http.Header methods write them.
		{"non-canonical key", http.Header{"idempotency-key": {"k"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.HasIdempotencyKey(tt.h))
		})
	}

	// Set canonicalises, so a lower-case name written the normal way counts.
	h := http.Header{}
	h.Set("idempotency-key", "k")
	assert.True(t, classify.HasIdempotencyKey(h))
	h = http.Header{}
	h.Set("x-idempotency-key", "k")
	assert.True(t, classify.HasIdempotencyKey(h))
}

func TestIdempotent(t *testing.T) {
	tests := []struct {
		name   string
		method string
		header []string
		want   bool
	}{
		{"GET", http.MethodGet, nil, true},
		{"HEAD", http.MethodHead, nil, true},
		{"PUT", http.MethodPut, nil, true},
		{"DELETE", http.MethodDelete, nil, true},
		{"QUERY", classify.MethodQuery, nil, true},
		{"POST", http.MethodPost, nil, false},
		{"PATCH", http.MethodPatch, nil, false},
		{"POST with Idempotency-Key", http.MethodPost, []string{"Idempotency-Key", "k"}, true},
		{"POST with X-Idempotency-Key", http.MethodPost, []string{"X-Idempotency-Key", "k"}, true},
		{"PATCH with Idempotency-Key", http.MethodPatch, []string{"Idempotency-Key", "k"}, true},
		{"POST with another header", http.MethodPost, []string{"X-Request-Id", "k"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.Idempotent(newRequest(t, tt.method, tt.header...)))
		})
	}
	t.Run("nil request", func(t *testing.T) {
		assert.False(t, classify.Idempotent(nil))
	})
	t.Run("nil header", func(t *testing.T) {
		req := newRequest(t, http.MethodPost)
		req.Header = nil
		assert.False(t, classify.Idempotent(req))
		req.Method = http.MethodGet
		assert.True(t, classify.Idempotent(req))
	})
}

func TestIdempotentDoesNotAllocate(t *testing.T) {
	req := newRequest(t, http.MethodPost, "Idempotency-Key", "k")
	var ok bool
	assert.Zero(t, testing.AllocsPerRun(100, func() { ok = classify.Idempotent(req) }))
	assert.True(t, ok)
}

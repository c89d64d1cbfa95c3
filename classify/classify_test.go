package classify_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/classify"
)

// newRequest returns a client request for method with the given header
// pairs (name, value, name, value, ...) set through http.Header.Set.
func newRequest(t testing.TB, method string, header ...string) *http.Request {
	t.Helper()
	return newRequestCtx(t, context.Background(), method, header...)
}

// newRequestCtx is newRequest with a context.
func newRequestCtx(t testing.TB, ctx context.Context, method string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://api.example.test/v1/items", nil)
	require.NoError(t, err)
	require.Zero(t, len(header)%2, "header pairs")
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// response returns a bodiless response with the given status code.
func response(code int) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody}
}

// requestKind is one of the method/header shapes the status table covers,
// in the column order of its expectation strings.
type requestKind struct {
	name   string
	method string
	header []string
}

var requestKinds = []requestKind{
	{"GET", http.MethodGet, nil},
	{"PUT", http.MethodPut, nil},
	{"DELETE", http.MethodDelete, nil},
	{"POST", http.MethodPost, nil},
	{"PATCH", http.MethodPatch, nil},
	{"POST+Idempotency-Key", http.MethodPost, []string{"Idempotency-Key", "k-1"}},
	{"POST+X-Idempotency-Key", http.MethodPost, []string{"X-Idempotency-Key", "k-1"}},
}

// outcomeCodes maps the letters of the expectation strings to outcomes.
var outcomeCodes = map[byte]classify.Outcome{
	'S': classify.Success,
	'R': classify.Retryable,
	'F': classify.Final,
}

func TestClassifyStatus(t *testing.T) {
	// One letter per request kind, in requestKinds order:
	// GET PUT DELETE POST PATCH POST+key POST+xkey.
	tests := []struct {
		code   int
		want   string
		reason string
	}{
		{200, "SSSSSSS", "ok"},
		{201, "SSSSSSS", "ok"},
		{204, "SSSSSSS", "ok"},
		{301, "SSSSSSS", "ok"},
		{304, "SSSSSSS", "ok"},
		{400, "FFFFFFF", "status 400"},
		{404, "FFFFFFF", "status 404"},
		{408, "RRRFFRR", "status 408"},
		{409, "FFFFFRR", "status 409"},
		{422, "FFFFFFF", "status 422"},
		{429, "RRRRRRR", "status 429"},
		{500, "RRRFFRR", "status 500"},
		{501, "FFFFFFF", "status 501"},
		{502, "RRRFFRR", "status 502"},
		{503, "RRRFFRR", "status 503"},
		{504, "RRRFFRR", "status 504"},
		{505, "FFFFFFF", "status 505"},
	}
	for _, tt := range tests {
		require.Len(t, tt.want, len(requestKinds), "status %d", tt.code)
		for i, kind := range requestKinds {
			t.Run(kind.name+"/"+strconv.Itoa(tt.code), func(t *testing.T) {
				req := newRequest(t, kind.method, kind.header...)
				got := classify.Classify(req, response(tt.code), nil)
				assert.Equal(t, classify.Verdict{Outcome: outcomeCodes[tt.want[i]], Reason: tt.reason}, got)
			})
		}
	}
}

func TestClassifyOtherIdempotentMethods(t *testing.T) {
	for _, method := range []string{"", http.MethodHead, http.MethodOptions, http.MethodTrace, classify.MethodQuery} {
		t.Run("method="+method, func(t *testing.T) {
			req := newRequest(t, http.MethodGet)
			req.Method = method
			got := classify.Classify(req, response(http.StatusServiceUnavailable), nil)
			assert.Equal(t, classify.Retryable, got.Outcome)
		})
	}
	for _, method := range []string{http.MethodConnect, "PROPFIND", "get"} {
		t.Run("method="+method, func(t *testing.T) {
			req := newRequest(t, http.MethodGet)
			req.Method = method
			got := classify.Classify(req, response(http.StatusServiceUnavailable), nil)
			assert.Equal(t, classify.Final, got.Outcome)
		})
	}
}

func TestClassifyNilArguments(t *testing.T) {
	tests := []struct {
		name string
		req  *http.Request
		resp *http.Response
		err  error
		want classify.Verdict
	}{
		{"no response and no error", newRequest(t, http.MethodGet), nil, nil,
			classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonTransport}},
		{"nil request, 200", nil, response(200), nil,
			classify.Verdict{Outcome: classify.Success, Reason: classify.ReasonOK}},
		{"nil request, 503 is not known to be idempotent", nil, response(503), nil,
			classify.Verdict{Outcome: classify.Final, Reason: "status 503"}},
		{"nil request, 429", nil, response(429), nil,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 429"}},
		{"nil request, 409", nil, response(409), nil,
			classify.Verdict{Outcome: classify.Final, Reason: "status 409"}},
		{"nil request, error", nil, nil, errors.New("boom"),
			classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonTransport}},
		{"nil request, gate refusal", nil, nil, classify.ErrNotSent,
			classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonNotSent, NotSent: true}},
		{"nil request, dial refused", nil, nil, dialRefused(),
			classify.Verdict{Outcome: classify.Retryable, Reason: classify.ReasonRefused, NotSent: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got classify.Verdict
			require.NotPanics(t, func() { got = classify.Classify(tt.req, tt.resp, tt.err) })
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestClassifierCustomRetryable(t *testing.T) {
	custom := classify.NewStatuses(418, http.StatusServiceUnavailable)
	empty := classify.Statuses{}
	tests := []struct {
		name   string
		set    *classify.Statuses
		method string
		header []string
		code   int
		want   classify.Verdict
	}{
		{"added status retried", &custom, "GET", nil, 418,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 418"}},
		{"added status not retried for POST", &custom, "POST", nil, 418,
			classify.Verdict{Outcome: classify.Final, Reason: "status 418"}},
		{"kept status retried", &custom, "GET", nil, 503,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 503"}},
		{"default status left out is final", &custom, "GET", nil, 500,
			classify.Verdict{Outcome: classify.Final, Reason: "status 500"}},
		{"429 left out is final even for POST", &custom, "POST", nil, 429,
			classify.Verdict{Outcome: classify.Final, Reason: "status 429"}},
		{"409 with key still retried", &custom, "POST", []string{"Idempotency-Key", "k"}, 409,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 409"}},
		{"success unaffected", &custom, "GET", nil, 200,
			classify.Verdict{Outcome: classify.Success, Reason: "ok"}},
		{"empty set retries nothing", &empty, "GET", nil, 503,
			classify.Verdict{Outcome: classify.Final, Reason: "status 503"}},
		{"nil set means default", nil, "GET", nil, 502,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 502"}},
		{"a 3xx in the set is retried", ptr(classify.NewStatuses(307)), "GET", nil, 307,
			classify.Verdict{Outcome: classify.Retryable, Reason: "status 307"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := classify.Classifier{Retryable: tt.set}
			got := c.Classify(newRequest(t, tt.method, tt.header...), response(tt.code), nil)
			assert.Equal(t, tt.want, got)
		})
	}
	// The Classifier must not have changed the sets it was given.
	assert.True(t, custom.Has(418))
	assert.False(t, empty.Has(503))
}

func ptr[T any](v T) *T { return &v }

func TestStatusesHas(t *testing.T) {
	set := classify.NewStatuses(100, 199, 200, 255, 256, 320, 383, 384, 503, 599,
		// Out of range: ignored, never a panic.
		-1, 0, 99, 600, 639, 640, 1000, math.MaxInt, math.MinInt)
	tests := []struct {
		name string
		code int
		want bool
	}{
		{"lowest", 100, true},
		{"199", 199, true},
		{"200", 200, true},
		{"last bit of a word", 255, true},
		{"first bit of a word", 256, true},
		{"320", 320, true},
		{"383", 383, true},
		{"384", 384, true},
		{"503", 503, true},
		{"highest", 599, true},
		{"absent", 201, false},
		{"absent 404", 404, false},
		{"negative", -1, false},
		{"zero", 0, false},
		{"99", 99, false},
		{"600", 600, false},
		{"639 inside the bitmap but out of range", 639, false},
		{"640 past the bitmap", 640, false},
		{"1000", 1000, false},
		{"MaxInt", math.MaxInt, false},
		{"MinInt", math.MinInt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bool
			require.NotPanics(t, func() { got = set.Has(tt.code) })
			assert.Equal(t, tt.want, got)
		})
	}

	var zero classify.Statuses
	for code := -10; code <= 700; code++ {
		require.False(t, zero.Has(code), "zero set has %d", code)
	}
}

func TestDefaultRetryable(t *testing.T) {
	want := map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true}
	for code := 100; code <= 599; code++ {
		assert.Equal(t, want[code], classify.DefaultRetryable.Has(code), "status %d", code)
	}
}

func TestStatusReason(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{100, "status 100"},
		{200, "status 200"},
		{429, "status 429"},
		{503, "status 503"},
		{599, "status 599"},
		{99, "status other"},
		{600, "status other"},
		{0, "status other"},
		{-503, "status other"},
		{math.MaxInt, "status other"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			assert.Equal(t, tt.want, classify.StatusReason(tt.code))
		})
	}
	for code := 100; code <= 599; code++ {
		require.Equal(t, "status "+strconv.Itoa(code), classify.StatusReason(code))
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	get := newRequest(t, http.MethodGet)
	post := newRequest(t, http.MethodPost, "Idempotency-Key", "k")
	c := classify.Classifier{Retryable: ptr(classify.NewStatuses(503))}

	ok, unavailable, response409 := response(200), response(503), response(409)
	var v classify.Verdict
	assert.Zero(t, testing.AllocsPerRun(200, func() { v = classify.Classify(get, unavailable, nil) }), "503")
	assert.Equal(t, classify.Retryable, v.Outcome)
	assert.Zero(t, testing.AllocsPerRun(200, func() { v = classify.Classify(get, ok, nil) }), "200")
	assert.Equal(t, classify.Success, v.Outcome)
	assert.Zero(t, testing.AllocsPerRun(200, func() { v = c.Classify(post, unavailable, nil) }), "custom set")
	assert.Zero(t, testing.AllocsPerRun(200, func() { v = classify.Classify(post, response409, nil) }), "409 with key")
	assert.Equal(t, classify.Retryable, v.Outcome)
	assert.Zero(t, testing.AllocsPerRun(200, func() { _ = classify.StatusReason(503) }), "StatusReason")
	assert.Zero(t, testing.AllocsPerRun(200, func() {
		_ = classify.ServerHealth(get, unavailable, nil)
	}), "ServerHealth")
}

func TestOutcomeString(t *testing.T) {
	tests := []struct {
		o    classify.Outcome
		want string
	}{
		{classify.Success, "success"},
		{classify.Retryable, "retryable"},
		{classify.Final, "final"},
		{classify.Outcome(7), "outcome(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) { assert.Equal(t, tt.want, tt.o.String()) })
	}
	var zero classify.Verdict
	assert.Equal(t, classify.Success, zero.Outcome, "zero Verdict is a success")
}

func TestHealthString(t *testing.T) {
	tests := []struct {
		h    classify.Health
		want string
	}{
		{classify.Healthy, "healthy"},
		{classify.Unhealthy, "unhealthy"},
		{classify.Neutral, "neutral"},
		{classify.Health(9), "health(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) { assert.Equal(t, tt.want, tt.h.String()) })
	}
}

func TestServerHealthStatus(t *testing.T) {
	tests := []struct {
		code int
		want classify.Health
	}{
		{200, classify.Healthy},
		{204, classify.Healthy},
		{301, classify.Healthy},
		{400, classify.Healthy},
		{404, classify.Healthy},
		{408, classify.Healthy},
		{409, classify.Healthy},
		{429, classify.Healthy},
		{499, classify.Healthy},
		{500, classify.Unhealthy},
		{501, classify.Unhealthy},
		{502, classify.Unhealthy},
		{503, classify.Unhealthy},
		{504, classify.Unhealthy},
		{599, classify.Unhealthy},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				got := classify.ServerHealth(newRequest(t, method), response(tt.code), nil)
				assert.Equal(t, tt.want, got, method)
			}
		})
	}
	t.Run("no response and no error", func(t *testing.T) {
		assert.Equal(t, classify.Unhealthy, classify.ServerHealth(newRequest(t, "GET"), nil, nil))
	})
	t.Run("wait hints", func(t *testing.T) {
		// Backpressure is not failure: a live server asking for time.
		hinted := []struct {
			code         int
			header, hint string
			want         classify.Health
		}{
			{503, "Retry-After", "1", classify.Neutral},
			{503, "Retry-After", "0", classify.Neutral},
			{503, "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT", classify.Neutral}, // a past date: wait 0
			{500, "Retry-After", "30", classify.Neutral},
			{502, "Ratelimit", `"default";r=0;t=5`, classify.Neutral},
			{504, "X-Ratelimit-Reset", "7", classify.Neutral},
			{429, "Retry-After", "1", classify.Healthy},
			{200, "Retry-After", "1", classify.Healthy},
			// No hint the chain honours: still a failure.
			{503, "Retry-After", "soon", classify.Unhealthy},
			{503, "Retry-After", "-1", classify.Unhealthy},
			{503, "Ratelimit", `"default";r=5;t=5`, classify.Unhealthy}, // quota left
			{503, "X-Ratelimit-Remaining", "0", classify.Unhealthy},
		}
		for _, h := range hinted {
			resp := response(h.code)
			resp.Header.Set(h.header, h.hint)
			assert.Equal(t, h.want, classify.ServerHealth(newRequest(t, "GET"), resp, nil), "%d %s: %s", h.code, h.header, h.hint)
		}
	})
	t.Run("nil request", func(t *testing.T) {
		assert.Equal(t, classify.Healthy, classify.ServerHealth(nil, response(200), nil))
		assert.Equal(t, classify.Unhealthy, classify.ServerHealth(nil, nil, errors.New("boom")))
		assert.Equal(t, classify.Neutral, classify.ServerHealth(nil, nil, classify.ErrNotSent))
	})
}

func BenchmarkClassifyStatus(b *testing.B) {
	req := newRequest(b, http.MethodGet)
	for _, code := range []int{200, 503} {
		resp := response(code)
		b.Run(strconv.Itoa(code), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				classify.Classify(req, resp, nil)
			}
		})
	}
}

func BenchmarkClassifyError(b *testing.B) {
	req := newRequest(b, http.MethodGet)
	for _, bc := range []struct {
		name string
		err  error
	}{
		{"refused", dialRefused()},
		{"not sent", classify.ErrNotSent},
		{"tls", tlsUnknownAuthority()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				classify.Classify(req, nil, bc.err)
			}
		})
	}
}

// A retryable status whose response says not to retry is final; advice to
// retry makes no unsafe request safe.
func TestServerAdvice(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	post, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
	resp := func(code int, name, value string) *http.Response {
		h := http.Header{}
		if name != "" {
			h.Set(name, value)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	for _, tt := range []struct {
		name string
		req  *http.Request
		resp *http.Response
		want classify.Verdict
	}{
		{"503 no advice", get, resp(503, "", ""), classify.Verdict{Outcome: classify.Retryable, Reason: "status 503"}},
		{"503 X-Should-Retry false", get, resp(503, "X-Should-Retry", "false"), classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonServerAdvised}},
		{"429 Stripe-Should-Retry FALSE", post, resp(429, "Stripe-Should-Retry", " FALSE "), classify.Verdict{Outcome: classify.Final, Reason: classify.ReasonServerAdvised}},
		{"503 advice to retry a POST licenses nothing", post, resp(503, "Stripe-Should-Retry", "true"), classify.Verdict{Outcome: classify.Final, Reason: "status 503"}},
		{"503 advice to retry a GET", get, resp(503, "X-Should-Retry", "true"), classify.Verdict{Outcome: classify.Retryable, Reason: "status 503"}},
		{"garbled advice is none", get, resp(503, "X-Should-Retry", "maybe"), classify.Verdict{Outcome: classify.Retryable, Reason: "status 503"}},
		{"200 with advice is a success", get, resp(200, "X-Should-Retry", "false"), classify.Verdict{Outcome: classify.Success, Reason: classify.ReasonOK}},
		{"404 with advice is final by status", get, resp(404, "X-Should-Retry", "true"), classify.Verdict{Outcome: classify.Final, Reason: "status 404"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.Classify(tt.req, tt.resp, nil))
		})
	}
}

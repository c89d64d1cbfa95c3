package classify

import "net/http"

// Header names that mark a request as safe to repeat, as Go's own transport
// recognises them (request.go, isReplayable).
const (
	HeaderIdempotencyKey  = "Idempotency-Key"
	HeaderXIdempotencyKey = "X-Idempotency-Key"
)

// IdempotentMethod reports whether method is idempotent by RFC 9110 §9.2.2:
// GET, HEAD, OPTIONS, TRACE, PUT and DELETE. The empty method means GET.
func IdempotentMethod(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// HasIdempotencyKey reports whether h carries an Idempotency-Key or
// X-Idempotency-Key header (present in the map, as Go's transport checks).
// h must use canonical keys, as http.Header's methods write them.
func HasIdempotencyKey(h http.Header) bool {
	if h == nil {
		return false
	}
	if _, ok := h[HeaderIdempotencyKey]; ok {
		return true
	}
	_, ok := h[HeaderXIdempotencyKey]
	return ok
}

// Idempotent reports whether repeating req is safe: its method is
// idempotent or it carries an idempotency key. A nil request is not.
func Idempotent(req *http.Request) bool {
	if req == nil {
		return false
	}
	return IdempotentMethod(req.Method) || HasIdempotencyKey(req.Header)
}

package classify

import "net/http"

// Header names that mark a request as safe to repeat, as Go's own transport
// recognises them (request.go, isReplayable).
const (
	HeaderIdempotencyKey  = "Idempotency-Key"
	HeaderXIdempotencyKey = "X-Idempotency-Key"
)

// MethodQuery is the QUERY method (RFC 10008): a safe, idempotent request
// whose body says what to read, for queries too large or too sensitive for
// a URL. net/http has no constant for it.
const MethodQuery = "QUERY"

// IdempotentMethod reports whether method is idempotent by RFC 9110 §9.2.2
// and RFC 10008: GET, HEAD, OPTIONS, TRACE, PUT, DELETE and QUERY. The
// empty method means GET. Every decision of the chain that asks whether a
// request may be repeated (a retry after an ambiguous failure, a hedge, a
// learned timeout's cut) asks this function, through Idempotent.
func IdempotentMethod(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete, MethodQuery:
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

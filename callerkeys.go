package rebound

import (
	"net/http"

	"github.com/rebound-http/rebound/classify"
)

// callerKeys is the link, between the key link and the retry loop, of a
// policy whose hosts are not declared KeysHonored and whose caller keys
// are not trusted (Policy.TrustCallerKeys): it sends a key the caller set
// on a non-idempotent request under the lower-case header name, as the
// key link sends a generated key toward such a host. Header names are
// case-insensitive, so the server receives the key as usual; but the
// retry loop (classify.Idempotent) and net/http's replay rule read only
// the canonical names as a license to repeat the request, so the request
// is repeated only as a keyless one would be: when provably not sent, or
// answered 429.
type callerKeys struct{ next http.RoundTripper }

// Lower-case names of the headers that license a repeat.
const (
	lowerIdempotencyKey  = "idempotency-key"
	lowerXIdempotencyKey = "x-idempotency-key"
)

func (c callerKeys) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || classify.IdempotentMethod(req.Method) || !classify.HasIdempotencyKey(req.Header) {
		return c.next.RoundTrip(req)
	}
	out := new(http.Request)
	*out = *req
	out.Header = make(http.Header, len(req.Header))
	for name, vs := range req.Header {
		switch name {
		case classify.HeaderIdempotencyKey:
			name = lowerIdempotencyKey
		case classify.HeaderXIdempotencyKey:
			name = lowerXIdempotencyKey
		}
		out.Header[name] = vs[:len(vs):len(vs)]
	}
	return c.next.RoundTrip(out)
}

// CloseIdleConnections closes the idle connections of the next link.
func (c callerKeys) CloseIdleConnections() {
	if ci, ok := c.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

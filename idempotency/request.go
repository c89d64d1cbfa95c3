package idempotency

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// errBodyTooLarge is returned by readBody for a body over its limit.
var errBodyTooLarge = errors.New("idempotency: request body too large to fingerprint")

// keyHeader returns the raw value of the request's key header: the single
// Idempotency-Key or X-Idempotency-Key line. present is false when there
// is none; more than one line (of either name) is an error, since the
// request would be ambiguous.
func keyHeader(h http.Header) (raw string, present bool, err error) {
	vs, xs := h[HeaderKey], h[HeaderXKey]
	switch len(vs) + len(xs) {
	case 0:
		return "", false, nil
	case 1:
		if len(vs) == 1 {
			return vs[0], true, nil
		}
		return xs[0], true, nil
	}
	return "", true, fmt.Errorf("%w: more than one key header", ErrKeyInvalid)
}

// readBody reads r's whole body, refusing one over limit bytes without
// reading more than limit+1 of it. A request without a body gives nil.
// ContentLength is only a size hint: middleware in front may have replaced
// the body (decompressing it, say) without updating it, and the handler
// must still get every byte. A body cut short by an http.MaxBytesReader in
// front is refused as too large, like one over limit.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errBodyTooLarge, r.ContentLength, limit)
	}
	// Room for the whole body plus one byte, so that the read that finds
	// the end needs no growth; 512 bytes when the length is unknown.
	b := make([]byte, 0, max(r.ContentLength, 511)+1)
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return nil, fmt.Errorf("%w: limit %d", errBodyTooLarge, mbe.Limit)
			}
			return nil, err
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: limit %d", errBodyTooLarge, limit)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

// fingerprint returns the SHA-256 of r's method, escaped path and raw
// query, and of body. Each part is followed by a zero byte, which none of
// them contains before the body, so different requests never share an
// input.
func fingerprint(r *http.Request, body []byte) Fingerprint {
	bodySum := sha256.Sum256(body)
	var path, query string
	if r.URL != nil {
		path, query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, r.Method...)
	buf = append(buf, 0)
	buf = append(buf, path...)
	buf = append(buf, 0)
	buf = append(buf, query...)
	buf = append(buf, 0)
	buf = append(buf, bodySum[:]...)
	return sha256.Sum256(buf)
}

// AuthorizationScope is the default MiddlewareConfig.Scope: a digest of
// the request's Authorization header (the first 128 bits of its SHA-256,
// base64url), or "" without one, so that clients with different
// credentials have separate key spaces and a stored response never leaks
// to another client. Requests without credentials share one space, where
// the fingerprint check still keeps a key from replaying another
// request's response.
func AuthorizationScope(r *http.Request) string {
	var buf [scopeLen]byte
	return string(appendAuthorizationScope(buf[:0], r))
}

// scopeLen is the length of a non-empty AuthorizationScope.
const scopeLen = 22

// appendAuthorizationScope appends AuthorizationScope(r) to dst.
func appendAuthorizationScope(dst []byte, r *http.Request) []byte {
	vs := r.Header["Authorization"]
	if len(vs) == 0 {
		return dst
	}
	var sum [sha256.Size]byte
	if len(vs) == 1 {
		sum = sha256.Sum256([]byte(vs[0]))
	} else {
		h := sha256.New()
		for _, v := range vs {
			io.WriteString(h, v)
			h.Write([]byte{'\n'})
		}
		h.Sum(sum[:0])
	}
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// StoreKey returns the key under which the middleware stores a client's
// key within a scope: the scope, a newline, then the key. A key never
// contains a newline, so distinct (scope, key) pairs never collide,
// whatever the scope holds.
func StoreKey(scope, key string) string {
	return scope + "\n" + key
}

// storeKey returns StoreKey(scope(r), key), building the default scope's
// key with a single allocation.
func (m *middleware) storeKey(r *http.Request, key string) string {
	if m.cfg.Scope != nil {
		return StoreKey(m.cfg.Scope(r), key)
	}
	var arr [128]byte // enough for most keys; append grows it otherwise
	buf := appendAuthorizationScope(arr[:0], r)
	buf = append(buf, '\n')
	buf = append(buf, key...)
	return string(buf)
}

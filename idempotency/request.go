package idempotency

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
// ContentLength is only a hint: a client may declare a large body and
// send little of it, so the buffer grows as bytes arrive (at most
// initialBody before the first read), and middleware in front may have
// replaced the body (decompressing it, say) without updating it, so every
// byte is read whatever it says. A body cut short by an
// http.MaxBytesReader in front is refused as too large, like one over
// limit.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errBodyTooLarge, r.ContentLength, limit)
	}
	// Room for a small declared body plus one byte, so that the read that
	// finds the end needs no growth; 512 bytes when the length is unknown.
	n := int64(511)
	if r.ContentLength > 0 {
		n = min(r.ContentLength, initialBody)
	}
	b := make([]byte, 0, n+1)
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

// initialBody is the most readBody allocates before any byte has arrived.
const initialBody = 4<<10 - 1

// fingerprint returns the SHA-256 of r's method, escaped path, raw query,
// Content-Type and Content-Encoding values, and body. Each part is
// length-prefixed, so different requests never share an input. A body of
// up to inlineBody bytes is hashed with the rest in one pass; a longer one
// is hashed first and its digest stands in for it (a marker byte tells
// the two forms apart, and a body's length alone picks its form).
func fingerprint(r *http.Request, body []byte) Fingerprint {
	var path, query string
	if r.URL != nil {
		path, query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	var arr [512]byte
	buf := appendField(arr[:0], r.Method)
	buf = appendField(buf, path)
	buf = appendField(buf, query)
	for _, name := range [...]string{"Content-Type", "Content-Encoding"} {
		buf = appendHeaderValues(buf, r.Header[name])
	}
	if len(body) <= inlineBody {
		buf = append(buf, 0)
		buf = binary.AppendUvarint(buf, uint64(len(body)))
		buf = append(buf, body...)
	} else {
		bodySum := sha256.Sum256(body)
		buf = append(buf, 1)
		buf = append(buf, bodySum[:]...)
	}
	return sha256.Sum256(buf)
}

// inlineBody is the longest body fingerprint hashes in one pass with the
// rest of the request.
const inlineBody = 256

// appendField appends s to b with its length in front.
func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// CallerScope returns a scope that separates callers by everything that
// identifies them: a digest (the first 128 bits of a SHA-256, base64url)
// of the request's Host (lower-cased), its Authorization,
// Proxy-Authorization and Cookie headers, each of apiKeyHeaders (nil
// means DefaultAPIKeyHeaders), and the TLS client certificate it
// presented. Two requests share a scope only when they agree on all of
// these. It is the default MiddlewareConfig.Scope.
//
// The default errs on the side of separation: a caller whose cookie
// changes between a request and its retry (a rotated session) gets a new
// key space, so its retry runs the handler again rather than risk serving
// another caller's response. A service that knows its authenticated
// principal should scope by it instead (MiddlewareConfig.Scope).
// Callers without credentials share one space per host, where the
// fingerprint check still keeps a key from replaying another request's
// response. Behind a load balancer every instance must receive the same
// Host: one that rewrites it to each instance's address gives each its
// own key space, so a retry that lands on another instance runs again,
// even with a shared store.
func CallerScope(r *http.Request, apiKeyHeaders []string) string {
	if apiKeyHeaders == nil {
		apiKeyHeaders = DefaultAPIKeyHeaders
	}
	var buf [scopeLen]byte
	return string(appendCallerScope(buf[:0], r, canonicalHeaders(apiKeyHeaders)))
}

// scopeLen is the length of a CallerScope.
const scopeLen = 22

// credentialHeaders are the headers CallerScope always includes.
var credentialHeaders = [...]string{"Authorization", "Proxy-Authorization", "Cookie"}

// appendCallerScope appends CallerScope(r, apiKeyHeaders) to dst;
// apiKeyHeaders are in canonical form.
func appendCallerScope(dst []byte, r *http.Request, apiKeyHeaders []string) []byte {
	var arr [512]byte // most requests' credentials fit; append grows it otherwise
	buf := binary.AppendUvarint(arr[:0], uint64(len(r.Host)))
	buf = append(buf, r.Host...)
	for i := len(buf) - len(r.Host); i < len(buf); i++ {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	for _, name := range credentialHeaders {
		buf = appendHeaderValues(buf, r.Header[name])
	}
	for _, name := range apiKeyHeaders { // the list is fixed, so its order names them
		buf = appendHeaderValues(buf, r.Header[name])
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certSum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		buf = append(buf, 1)
		buf = append(buf, certSum[:]...)
	} else {
		buf = append(buf, 0)
	}
	sum := sha256.Sum256(buf)
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// appendHeaderValues appends a header's values, counted and each
// length-prefixed.
func appendHeaderValues(b []byte, vs []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = appendField(b, v)
	}
	return b
}

// canonicalHeaders returns names in canonical form, without duplicates or
// the headers CallerScope always includes.
func canonicalHeaders(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = http.CanonicalHeaderKey(n)
		if n == "" || slices.Contains(out, n) || slices.Contains(credentialHeaders[:], n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// StoreKey returns the key under which the middleware stores a client's
// key within a scope: the scope, a newline, then the key. A key never
// contains a newline, so distinct (scope, key) pairs never collide,
// whatever the scope holds, and the scope is everything before the last
// newline (MemoryStore bounds each scope's share that way).
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
	buf := appendCallerScope(arr[:0], r, m.cfg.APIKeyHeaders)
	buf = append(buf, '\n')
	buf = append(buf, key...)
	return string(buf)
}

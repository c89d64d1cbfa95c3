package classify

import (
	"errors"
	"strings"

	"golang.org/x/net/http2"
)

// HTTP/2 can prove what HTTP/1 cannot: that the server did not process a
// request (RFC 9113 §8.7). A stream the server reset with REFUSED_STREAM
// was closed before any processing, and a stream above the last stream id
// of a GOAWAY was never acted on; such a request may be sent again
// whatever its method. Streams at or below that id may have been
// processed, so a GOAWAY followed by a closed connection ("server sent
// GOAWAY and closed the connection") proves nothing about them.
//
// What reaches a RoundTripper above net/http's HTTP/2 transport (its
// bundled copy of golang.org/x/net/http2; x/net's own Transport behaves
// alike): for a request with no body or with GetBody, which is every body
// the retry loop can replay, net/http retries a refused stream, a stream
// above a GOAWAY and a connection that could not take the stream itself,
// at once and then after 1, 2, 4, 8, 16 and 32 s, on a new connection when
// needed. So the caller sees
//
//   - after the eighth refusal in a row (about 63 s), the StreamError with
//     code REFUSED_STREAM, or the unexported "graceful shutdown GOAWAY"
//     error;
//   - at once, for a request whose body was written and has no GetBody:
//     "http2: Transport: cannot retry err [...] after Request.Body was
//     written", which keeps only the cause's text;
//   - at once, for the first stream of a connection whose GOAWAY carries
//     an error code: "http2: Transport received GOAWAY from server
//     ErrCode:...", which net/http does not retry.
//
// The StreamError is matched by type (net/http's copy converts itself to
// x/net's with errors.As); the unexported errors by their exact text, on
// each error of the tree, so a message that merely quotes them (a GOAWAY's
// debug data, say) does not match.

// Texts of the unexported errors of net/http's and x/net's HTTP/2
// transports that mean the stream was never opened or never processed.
const (
	h2GotGoAway      = "http2: Transport received Server's graceful shutdown GOAWAY"
	h2GoAwayWithCode = "http2: Transport received GOAWAY from server ErrCode:"
	h2Unusable       = "http2: client conn not usable"
	h2NotEstablished = "http2: client conn could not be established"
	h2CannotRetry    = "http2: Transport: cannot retry err ["
	h2CannotRetryEnd = "] after Request.Body was written; define Request.GetBody to avoid this error"
	h2StreamError    = "stream error: stream ID "
	h2FromPeer       = "received from peer"
)

// http2NotProcessed reports whether err proves that an HTTP/2 server did
// not process the request: see the comment above.
func http2NotProcessed(err error) bool {
	if se, ok := errors.AsType[http2.StreamError](err); ok && se.Code == http2.ErrCodeRefusedStream {
		return true
	}
	return anyError(err, func(e error) bool { return h2Unprocessed(e.Error()) })
}

// h2Unprocessed reports whether msg is the whole text of one of the
// errors that http2NotProcessed accepts.
func h2Unprocessed(msg string) bool {
	if inner, ok := strings.CutPrefix(msg, h2CannotRetry); ok {
		inner, ok = strings.CutSuffix(inner, h2CannotRetryEnd)
		return ok && (h2Sentinel(inner) || refusedStreamText(inner))
	}
	return h2Sentinel(msg)
}

// h2Sentinel reports whether msg is the text of an unexported error that
// means the stream was never opened or was above a GOAWAY's last stream id.
func h2Sentinel(msg string) bool {
	switch msg {
	case h2GotGoAway, h2Unusable, h2NotEstablished:
		return true
	}
	code, ok := strings.CutPrefix(msg, h2GoAwayWithCode)
	return ok && errCodeText(code)
}

// refusedStreamText reports whether msg is the text of a StreamError with
// code REFUSED_STREAM: "stream error: stream ID 3; REFUSED_STREAM", with
// "; received from peer" when the server sent it.
func refusedStreamText(msg string) bool {
	rest, ok := strings.CutPrefix(msg, h2StreamError)
	if !ok {
		return false
	}
	id, rest, ok := strings.Cut(rest, "; ")
	if !ok || !digits(id) {
		return false
	}
	rest, ok = strings.CutPrefix(rest, http2.ErrCodeRefusedStream.String())
	return ok && (rest == "" || rest == "; "+h2FromPeer)
}

// errCodeText reports whether s is how an http2.ErrCode prints: a known
// code's name, or "unknown error code 0x" and hex digits.
func errCodeText(s string) bool {
	for c := http2.ErrCodeNo; c <= http2.ErrCodeHTTP11Required; c++ {
		if s == c.String() {
			return true
		}
	}
	hex, ok := strings.CutPrefix(s, "unknown error code 0x")
	if !ok || hex == "" || len(hex) > 8 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// digits reports whether s is a non-empty run of decimal digits.
func digits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// anyError reports whether f holds for err or any error in its tree
// (Unwrap() error and Unwrap() []error), depth first.
func anyError(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if anyError(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

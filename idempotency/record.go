package idempotency

import (
	"bufio"
	"net"
	"net/http"
	"strings"
)

// recorder is the http.ResponseWriter the handler of a reserved key writes
// to. It passes everything through to the real writer at once (the client
// sees a normal streamed response) while keeping a copy of the status, the
// headers as they were sent, and up to limit bytes of body. In buffered
// mode (a transaction) it sends nothing but informational statuses until
// send is called, and supports neither Flush nor Hijack.
//
// It implements Flush, FlushError and Hijack itself and Unwrap for the
// rest, so http.ResponseController works through it.
type recorder struct {
	w        http.ResponseWriter
	limit    int
	buffered bool

	status   int         // final status written, 0 until then
	header   http.Header // headers as of WriteHeader
	body     []byte
	tooLarge bool // body passed limit; body was dropped
	hijacked bool // the handler took over the connection
	upgraded bool // the handler wrote 101 Switching Protocols
}

// Header returns the real writer's header map.
func (r *recorder) Header() http.Header { return r.w.Header() }

// WriteHeader records the first final status and a snapshot of the
// headers, then writes it. Informational statuses pass through
// unrecorded; 101 Switching Protocols marks the response as one whose
// outcome the middleware cannot know.
func (r *recorder) WriteHeader(code int) {
	informational := code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols
	if !informational && r.status == 0 && !r.hijacked && !r.upgraded {
		if code == http.StatusSwitchingProtocols {
			r.upgraded = true
		} else {
			r.status = code
			r.header = storedHeader(r.w.Header())
		}
	}
	if r.buffered && !informational {
		return
	}
	r.w.WriteHeader(code)
}

// Write records p (whether or not the client receives it: a departed
// client's retry must still get the full response) and writes it.
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 && !r.upgraded {
		r.WriteHeader(http.StatusOK)
	}
	r.keep(p)
	if r.buffered {
		return len(p), nil
	}
	return r.w.Write(p)
}

// keep appends p to the recorded body, or drops the body once it passes
// the limit.
func (r *recorder) keep(p []byte) {
	if r.tooLarge || len(p) == 0 {
		return
	}
	if len(r.body)+len(p) > r.limit {
		r.tooLarge = true
		r.body = nil
		return
	}
	if r.body == nil {
		r.body = make([]byte, 0, min(max(len(p), 512), r.limit))
	}
	r.body = append(r.body, p...)
}

// Flush flushes the real writer, when it can.
func (r *recorder) Flush() { _ = r.FlushError() }

// FlushError flushes the real writer and returns its error, or
// http.ErrNotSupported (always, in buffered mode).
func (r *recorder) FlushError() error {
	if r.buffered {
		return http.ErrNotSupported
	}
	if r.status == 0 && !r.upgraded {
		r.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(r.w).Flush()
}

// Hijack hands the connection to the handler and marks the response as
// one whose outcome is unknown: what the handler sends on it is not
// recorded. In buffered mode it returns http.ErrNotSupported.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if r.buffered {
		return nil, nil, http.ErrNotSupported
	}
	c, rw, err := http.NewResponseController(r.w).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}

// Unwrap returns the real writer, for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// finalStatus returns the status the client got: the one written, or 200.
func (r *recorder) finalStatus() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// response returns the recorded response, as stored.
func (r *recorder) response() *Response {
	status, header := r.status, r.header
	if status == 0 {
		status, header = http.StatusOK, storedHeader(r.w.Header())
	}
	if r.tooLarge {
		return &Response{Status: status, Header: header, NotReplayable: true}
	}
	return &Response{Status: status, Header: header, Body: r.body}
}

// unknown returns the record of a handler whose outcome is unknown, with
// the status it wrote, or otherwise status.
func (r *recorder) unknown(status int) *Response {
	if r.status != 0 {
		status = r.status
	}
	return &Response{Status: status, NotReplayable: true, OutcomeUnknown: true}
}

// send writes a buffered response to the real writer.
func (r *recorder) send() {
	r.w.WriteHeader(r.finalStatus())
	if len(r.body) > 0 {
		r.w.Write(r.body)
	}
}

// hopByHop lists headers that describe one connection, not the response,
// and are never replayed.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// storedHeader copies h for storage, without hop-by-hop headers and
// trailers (which are not replayed).
func storedHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if hopByHop[k] || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// replay writes a stored response to w, marked with Idempotent-Replayed.
func replay(w http.ResponseWriter, resp *Response) {
	n := 1
	for _, vs := range resp.Header {
		n += len(vs)
	}
	// One backing array for every value, so the stored slices are never
	// shared with code that might modify the header in place.
	vals := make([]string, 0, n)
	h := w.Header()
	for k, vs := range resp.Header {
		vals = append(vals, vs...)
		h[k] = vals[len(vals)-len(vs) : len(vals) : len(vals)]
	}
	vals = append(vals, "true")
	h[HeaderReplayed] = vals[len(vals)-1:]
	w.WriteHeader(resp.Status)
	if len(resp.Body) > 0 {
		w.Write(resp.Body)
	}
}

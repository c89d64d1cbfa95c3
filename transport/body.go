package transport

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/rebound-http/rebound/classify"
)

// errStaleBody is returned by the reader of an earlier attempt once a newer
// attempt has started reading: only one attempt may consume the source.
var errStaleBody = errors.New("transport: request body read by a superseded attempt")

// errShortBody is the source's end before the request's ContentLength.
var errShortBody = errors.New("transport: request body shorter than its ContentLength")

// recorder makes a request body without GetBody replayable without reading
// it up front: the bytes are recorded as the first attempt streams them to
// the server, up to a limit, and a later attempt reads the recording, then
// continues from the source where the earlier attempt stopped. A body that
// outgrows the limit is no longer recorded and cannot be replayed.
//
// Each attempt gets its own reader; a newer reader makes older ones stale,
// because net/http may still read a failed attempt's body from another
// goroutine after RoundTrip has returned.
type recorder struct {
	src   io.ReadCloser
	limit int64

	mu       sync.Mutex
	buf      []byte
	gen      int   // generation of the reader allowed to read
	overflow bool  // buf no longer holds every byte read from src
	srcErr   error // sticky error (io.EOF included) from src
	done     bool  // the loop is over: no new reader will be made
	curOpen  bool  // the current reader has not been closed yet
	closed   bool  // src has been closed
	length   int64 // the request's ContentLength; ≤ 0 when unknown
	read     int64 // bytes read from src so far
}

// newRecorder records src, whose declared length is length (≤ 0: unknown).
func newRecorder(src io.ReadCloser, limit, length int64) *recorder {
	return &recorder{src: src, limit: limit, length: length}
}

// reader returns a reader of the whole body for a new attempt, or false when
// the body can no longer be replayed.
func (r *recorder) reader() (io.ReadCloser, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow || r.closed || r.done {
		return nil, false
	}
	r.gen++
	r.curOpen = true
	return &replayReader{rec: r, gen: r.gen}, true
}

// getBody is the GetBody of the outgoing request, so net/http can replay it
// too.
func (r *recorder) getBody() (io.ReadCloser, error) {
	if rc, ok := r.reader(); ok {
		return rc, nil
	}
	return nil, errors.New("transport: request body exceeded the replay limit")
}

// replayable reports whether another attempt can read the whole body.
func (r *recorder) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.overflow && !r.closed && !r.done
}

// finish ends the call: the source is closed now if no attempt is still
// reading it, else when the last attempt's reader is closed (net/http may
// go on writing a body after RoundTrip has returned).
func (r *recorder) finish() {
	r.mu.Lock()
	r.done = true
	r.closeSrcLocked()
	r.mu.Unlock()
}

// closeSrcLocked closes src once the loop is done and no reader is open.
// r.mu must be held.
func (r *recorder) closeSrcLocked() {
	if r.done && !r.curOpen && !r.closed {
		r.closed = true
		r.src.Close()
	}
}

type replayReader struct {
	rec *recorder
	gen int
	off int
}

func (p *replayReader) Read(b []byte) (int, error) {
	r := p.rec
	r.mu.Lock()
	if p.gen != r.gen {
		r.mu.Unlock()
		return 0, errStaleBody
	}
	if p.off < len(r.buf) {
		n := copy(b, r.buf[p.off:])
		p.off += n
		r.mu.Unlock()
		return n, nil
	}
	if r.srcErr != nil {
		err := r.srcErr
		r.mu.Unlock()
		return 0, err
	}
	if r.closed {
		r.mu.Unlock()
		return 0, errStaleBody
	}
	r.mu.Unlock()

	// Only the current generation reaches here, and net/http reads a
	// body from one goroutine, so src is never read concurrently.
	n, err := r.src.Read(b)

	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.overflow {
		if int64(len(r.buf)+n) > r.limit {
			r.overflow = true
			r.buf = nil
		} else {
			r.buf = append(r.buf, b[:n]...)
			p.off += n
		}
	}
	r.read += int64(n)
	if err == io.EOF && r.length > 0 && r.read < r.length {
		// The source ended before the length the caller declared. Say so
		// now, as the caller's fault: left to net/http, the attempt may
		// instead fail with whatever the broken connection reports.
		err = errShortBody
	}
	if err != nil {
		if err != io.EOF {
			// The caller's source failed, not the connection: mark it so
			// the loop stops and the breaker does not blame the server.
			err = &classify.RequestBodyError{Err: err}
		}
		r.srcErr = err
	}
	return n, err
}

// Close marks the reader closed. The source itself is closed once the loop
// is over and the current attempt's reader is closed.
func (p *replayReader) Close() error {
	r := p.rec
	r.mu.Lock()
	if p.gen == r.gen {
		r.curOpen = false
		r.closeSrcLocked()
	}
	r.mu.Unlock()
	return nil
}

// bufferBody reads resp's body, up to limit bytes, and closes it, so the
// connection can be reused while the response is kept in case the loop
// must return it. It reports false, leaving the body fully readable (the
// bytes read, then the rest of the stream), when the body is larger than
// limit. A read error is kept: the buffered body returns the bytes read,
// then that error, so nothing is silently lost.
func bufferBody(resp *http.Response, limit int64) bool {
	body := resp.Body
	if body == nil || body == http.NoBody {
		return true
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if int64(len(data)) > limit {
		resp.Body = &joinedBody{Reader: io.MultiReader(bytes.NewReader(data), body), closer: body}
		return false
	}
	body.Close()
	if err != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), errReader{err}))
		return true
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return true
}

// discard drains at most limit bytes of a response body that will not be
// returned, then closes it, so a keep-alive connection is reused when the
// body was small.
func discard(resp *http.Response, limit int64) {
	if resp == nil || resp.Body == nil {
		return
	}
	io.CopyN(io.Discard, resp.Body, limit)
	resp.Body.Close()
}

type joinedBody struct {
	io.Reader
	closer io.Closer
}

func (j *joinedBody) Close() error { return j.closer.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

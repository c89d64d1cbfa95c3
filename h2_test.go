package rebound_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 can prove that a server did not process a stream: RST_STREAM
// REFUSED_STREAM, or a stream above the last stream id of a GOAWAY. These
// tests put such frames in front of net/http's HTTP/2 transport, from a raw
// server written with x/net's Framer, and check what reaches the chain: a
// keyless POST (the generated key licenses nothing) is sent again after
// them, and only after them.

// h2Action is what the raw server does with one request stream.
type h2Action int

const (
	h2Answer      h2Action = iota // 200 "ok" once the request has ended
	h2Refuse                      // RST_STREAM REFUSED_STREAM on its HEADERS
	h2GoAwayAbove                 // GOAWAY NO_ERROR whose last stream id is below the stream's
	h2GoAwayCode                  // GOAWAY ENHANCE_YOUR_CALM, last stream id 0, and close
	h2GoAwayHere                  // GOAWAY NO_ERROR naming the stream as last, and close unanswered
)

// h2Stream is one request stream the raw server saw.
type h2Stream struct {
	conn   int // 1-based connection number
	id     uint32
	fields []hpack.HeaderField
}

// field returns the value of the first field called name, and whether
// there is one.
func (s h2Stream) field(name string) (string, bool) {
	for _, f := range s.fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// rawH2 is an HTTP/2 server (prior knowledge, no TLS) on 127.0.0.1 that
// does with the nth stream it sees what act says.
type rawH2 struct {
	ln       net.Listener
	act      func(n int, s h2Stream) h2Action
	mu       sync.Mutex
	streams  []h2Stream
	conns    []net.Conn
	answered atomic.Int64
	wg       sync.WaitGroup
}

func newRawH2(t *testing.T, act func(n int, s h2Stream) h2Action) *rawH2 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &rawH2{ln: ln, act: act}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			n := len(s.conns)
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c, n) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawH2) url() string { return "http://" + s.ln.Addr().String() }

// seen returns the streams seen so far.
func (s *rawH2) seen() []h2Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]h2Stream(nil), s.streams...)
}

// queuedWriter hands every write to a goroutine that writes it to the
// connection, so that the server's read loop never waits for the client
// to read (net.Pipe is unbuffered, and net/http's client writes its
// preface before it starts reading).
type queuedWriter chan []byte

func (q queuedWriter) Write(p []byte) (int, error) {
	q <- bytes.Clone(p)
	return len(p), nil
}

// serve speaks HTTP/2 on one connection until it ends.
func (s *rawH2) serve(c net.Conn, conn int) {
	out := make(queuedWriter, 1024)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for b := range out {
			if _, err := c.Write(b); err != nil {
				break
			}
		}
		for range out {
		}
	}()
	defer func() {
		close(out)
		<-written // the frames are out, a GOAWAY included
		c.Close()
	}()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(out, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if fr.WriteSettings() != nil {
		return
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	answer := func(id uint32) {
		s.answered.Add(1) // before the client can read the answer
		block.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "2"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndHeaders: true})
		fr.WriteData(id, true, []byte("ok"))
	}
	open := map[uint32]bool{} // streams to answer when their request ends
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			st := h2Stream{conn: conn, id: f.StreamID, fields: f.Fields}
			s.mu.Lock()
			s.streams = append(s.streams, st)
			n := len(s.streams)
			s.mu.Unlock()
			switch s.act(n, st) {
			case h2Refuse:
				fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
			case h2GoAwayAbove:
				last := uint32(0)
				if f.StreamID > 2 {
					last = f.StreamID - 2
				}
				fr.WriteGoAway(last, http2.ErrCodeNo, nil)
			case h2GoAwayCode:
				fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("slow down"))
				return
			case h2GoAwayHere:
				fr.WriteGoAway(f.StreamID, http2.ErrCodeNo, nil)
				return
			default:
				if f.StreamEnded() {
					answer(f.StreamID)
				} else {
					open[f.StreamID] = true
				}
			}
		case *http2.DataFrame:
			if f.StreamEnded() && open[f.StreamID] {
				delete(open, f.StreamID)
				answer(f.StreamID)
			}
		}
	}
}

// h2cBase returns net/http's transport speaking HTTP/2 with prior
// knowledge to http:// URLs, closed at the end of the test.
func h2cBase(t *testing.T) *http.Transport {
	t.Helper()
	tr := &http.Transport{}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// retries returns an Observer option that counts the chain's own retries
// and the reasons it gave.
func retries() (rebound.Option, func() []transport.Event) {
	var mu sync.Mutex
	var got []transport.Event
	return rebound.WithObserver(rebound.Observer{Retry: func(e transport.Event) {
			if e.Kind == transport.EventRetry {
				mu.Lock()
				got = append(got, e)
				mu.Unlock()
			}
		}}), func() []transport.Event {
			mu.Lock()
			defer mu.Unlock()
			return append([]transport.Event(nil), got...)
		}
}

// unreplayable is a POST body net/http cannot rewind (no GetBody).
func unreplayable(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// TestHTTP2RefusedStreamIsNotSent: a server that refuses a stream has not
// processed it. net/http's HTTP/2 transport retries it itself when it can
// rewind the body (the chain always gives it GetBody), so the chain sees
// the answer; with a body it cannot rewind, the refusal reaches the
// RoundTripper as a "cannot retry" error, which classify reads as not
// sent.
func TestHTTP2RefusedStreamIsNotSent(t *testing.T) {
	t.Run("net/http retries it under the chain", func(t *testing.T) {
		s := newRawH2(t, func(n int, _ h2Stream) h2Action {
			if n == 1 {
				return h2Refuse
			}
			return h2Answer
		})
		obs, seen := retries()
		rt := rebound.NewTransport(h2cBase(t), rebound.WithRetry(fastRetry), obs)
		code, body, err := post(t, rt, context.Background(), s.url(), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "ok", body)
		assert.Len(t, s.seen(), 2, "refused, then sent again")
		assert.EqualValues(t, 1, s.answered.Load())
		assert.Empty(t, seen(), "the retry was net/http's, under the chain")
	})

	t.Run("what reaches the RoundTripper", func(t *testing.T) {
		s := newRawH2(t, func(int, h2Stream) h2Action { return h2Refuse })
		req, _ := http.NewRequest(http.MethodPost, s.url()+"/orders", unreplayable(`{"sku":42}`))
		req.ContentLength = int64(len(`{"sku":42}`))
		_, err := h2cBase(t).RoundTrip(req)
		require.Error(t, err)
		t.Logf("net/http: %v", err)
		assert.Contains(t, err.Error(), "REFUSED_STREAM")
		assert.True(t, classify.NotSent(err), "%v", err)
		v := classify.Classify(req, nil, err)
		assert.Equal(t, classify.Retryable, v.Outcome, "a keyless POST may be sent again: %+v", v)
		assert.True(t, v.NotSent)
		assert.Len(t, s.seen(), 1)
	})
}

// TestHTTP2GoAway: a stream above the last stream id of a GOAWAY was not
// processed, one at or below it may have been.
func TestHTTP2GoAway(t *testing.T) {
	t.Run("with an error code, on a fresh connection: the chain retries", func(t *testing.T) {
		// net/http does not retry the first stream of a connection whose
		// GOAWAY carries an error code; the error reaches the chain.
		s := newRawH2(t, func(n int, _ h2Stream) h2Action {
			if n == 1 {
				return h2GoAwayCode
			}
			return h2Answer
		})
		obs, seen := retries()
		rt := rebound.NewTransport(h2cBase(t), rebound.WithRetry(fastRetry), obs)
		code, _, err := post(t, rt, context.Background(), s.url(), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		streams := s.seen()
		require.Len(t, streams, 2)
		assert.Greater(t, streams[1].conn, streams[0].conn, "sent again on a new connection")
		assert.EqualValues(t, 1, s.answered.Load())
		if ev := seen(); assert.Len(t, ev, 1, "the chain's own retry") {
			assert.Equal(t, classify.ReasonHTTP2, ev[0].Reason)
			t.Logf("retried after: %v", ev[0].Err)
		}
	})

	t.Run("graceful, above the last stream id, reused connection", func(t *testing.T) {
		// Stream 1 (a GET) is answered; the POST on stream 3 meets a
		// GOAWAY whose last stream id is 1. net/http sends it again on a
		// new connection by itself.
		s := newRawH2(t, func(n int, _ h2Stream) h2Action {
			if n == 2 {
				return h2GoAwayAbove
			}
			return h2Answer
		})
		obs, seen := retries()
		rt := rebound.NewTransport(h2cBase(t), rebound.WithRetry(fastRetry), obs)
		req, _ := http.NewRequest(http.MethodGet, s.url(), nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		code, _, err := post(t, rt, context.Background(), s.url(), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		streams := s.seen()
		require.Len(t, streams, 3)
		assert.Equal(t, [3]uint32{1, 3, 1}, [3]uint32{streams[0].id, streams[1].id, streams[2].id})
		assert.Greater(t, streams[2].conn, streams[1].conn, "sent again on a new connection")
		assert.EqualValues(t, 2, s.answered.Load())
		assert.Empty(t, seen())
	})

	t.Run("graceful, above the last stream id, body not rewindable", func(t *testing.T) {
		s := newRawH2(t, func(n int, _ h2Stream) h2Action {
			if n == 2 {
				return h2GoAwayAbove
			}
			return h2Answer
		})
		base := h2cBase(t)
		req, _ := http.NewRequest(http.MethodGet, s.url(), nil)
		resp, err := base.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		req, _ = http.NewRequest(http.MethodPost, s.url()+"/orders", unreplayable("x"))
		req.ContentLength = 1
		_, err = base.RoundTrip(req)
		require.Error(t, err)
		t.Logf("net/http: %v", err)
		assert.True(t, classify.NotSent(err), "%v", err)
		assert.Equal(t, classify.Retryable, classify.Classify(req, nil, err).Outcome)
	})

	t.Run("the stream is the last one: it may have been processed", func(t *testing.T) {
		s := newRawH2(t, func(int, h2Stream) h2Action { return h2GoAwayHere })
		obs, seen := retries()
		rt := rebound.NewTransport(h2cBase(t), rebound.WithRetry(fastRetry), obs)
		_, _, err := post(t, rt, context.Background(), s.url(), nil)
		require.Error(t, err)
		t.Logf("chain: %v", err)
		assert.False(t, classify.NotSent(err))
		assert.Len(t, s.seen(), 1, "a keyless POST is not sent again")
		assert.Empty(t, seen())
	})
}

// TestHTTP2GeneratedKeyOnTheWire decodes the HEADERS frame: a generated
// key toward a host not declared to honour keys goes out once, as every
// HTTP/2 field name does, in lower case.
func TestHTTP2GeneratedKeyOnTheWire(t *testing.T) {
	s := newRawH2(t, func(int, h2Stream) h2Action { return h2Answer })
	for _, declared := range []bool{false, true} {
		rt := rebound.NewTransport(h2cBase(t), rebound.WithPolicy(rebound.Policy{KeysHonored: declared}))
		req, _ := http.NewRequest(http.MethodPost, s.url(), strings.NewReader("x"))
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		streams := s.seen()
		st := streams[len(streams)-1]
		key, ok := st.field("idempotency-key")
		require.True(t, ok, "declared %v: fields %v", declared, st.fields)
		assert.Len(t, key, 36)
		n := 0
		for _, f := range st.fields {
			if strings.EqualFold(f.Name, "idempotency-key") {
				n++
			}
		}
		assert.Equal(t, 1, n, "one key field")
	}
}

// pipeBase returns net/http's transport speaking HTTP/2 with prior
// knowledge over in-memory pipes to s, for tests in a synctest bubble,
// where a loopback socket would not let virtual time pass.
func (s *rawH2) pipeBase() *http.Transport {
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		c, srv := net.Pipe()
		s.mu.Lock()
		s.conns = append(s.conns, srv)
		n := len(s.conns)
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(srv, n) })
		return c, nil
	}}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	return tr
}

// close ends every connection of a pipe server and waits for them.
func (s *rawH2) close() {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// TestHTTP2PersistentRefusalReachesTheChain: net/http's transport retries
// a refused stream itself, at once and then after 1, 2, 4, 8, 16 and 32 s.
// Only the eighth refusal in a row reaches the RoundTripper above it, as
// net/http's own StreamError, which errors.As converts to x/net's. The
// chain reads it as not sent and sends the keyless POST again. Virtual
// time, so the minute of net/http's backoff costs nothing.
func TestHTTP2PersistentRefusalReachesTheChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &rawH2{act: func(n int, _ h2Stream) h2Action {
			if n <= 8 {
				return h2Refuse
			}
			return h2Answer
		}}
		defer s.close()
		base := s.pipeBase()
		defer base.CloseIdleConnections()

		// net/http alone: the eighth refusal is the error.
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, "http://h2.test/orders", strings.NewReader("x"))
		_, err := base.RoundTrip(req)
		require.Error(t, err)
		took := time.Since(start)
		t.Logf("net/http after %v: %v", took, err)
		se, ok := errors.AsType[http2.StreamError](err)
		require.True(t, ok, "net/http's StreamError converts to x/net's: %T", err)
		assert.Equal(t, http2.ErrCodeRefusedStream, se.Code)
		assert.Len(t, s.seen(), 8, "net/http sent it 8 times")
		assert.GreaterOrEqual(t, took, 63*time.Second, "1+2+4+8+16+32 s of net/http's backoff")
		assert.True(t, classify.NotSent(err))

		// The chain: eight refusals under one attempt, then its own retry.
		s.act = func(n int, _ h2Stream) h2Action {
			if n <= 16 {
				return h2Refuse
			}
			return h2Answer
		}
		obs, seen := retries()
		rt := rebound.NewTransport(base, rebound.WithRetry(fastRetry), obs)
		code, _, err := post(t, rt, context.Background(), "http://h2.test", nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		assert.Len(t, s.seen(), 17)
		assert.EqualValues(t, 1, s.answered.Load())
		if ev := seen(); assert.Len(t, ev, 1) {
			assert.Equal(t, classify.ReasonHTTP2, ev[0].Reason)
		}
	})
}

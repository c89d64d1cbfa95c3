package idempotency_test

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connKey is the context key under which closingServer's handler finds the
// connection a request arrived on.
type connKey struct{}

// closingServer runs a handler that counts the POSTs it executes and then
// drops the connection without answering: hijacked and closed over
// HTTP/1.1, the TLS connection closed under the HTTP/2 server. A GET is
// answered normally, so a test can put a keep-alive connection in the
// pool first and make the POST travel on a reused one.
type closingServer struct {
	srv  *httptest.Server
	runs atomic.Int64
}

func newClosingServer(t *testing.T, http2 bool) *closingServer {
	t.Helper()
	s := &closingServer{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, "warm")
			return
		}
		io.Copy(io.Discard, r.Body)
		s.runs.Add(1) // the effect happens...
		if r.ProtoMajor == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			conn.Close() // ...and its answer is lost
			return
		}
		r.Context().Value(connKey{}).(net.Conn).Close()
	}))
	s.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the HTTP/2 server logs the closed connection
	if http2 {
		s.srv.EnableHTTP2 = true
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// base returns a fresh transport to the server (HTTP/2 over TLS for an
// HTTP/2 server), closed at the end of the test.
func (s *closingServer) base(t *testing.T) *http.Transport {
	t.Helper()
	tr := s.srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// warm makes one GET through rt, so that a keep-alive connection to the
// server is in rt's pool.
func (s *closingServer) warm(t *testing.T, rt http.RoundTripper) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// post sends one POST with a replayable body (GetBody set, as
// http.NewRequest does for a strings.Reader) through rt.
func (s *closingServer) post(t *testing.T, rt http.RoundTripper, ctx context.Context) error {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.srv.URL+"/orders", strings.NewReader(`{"sku":42}`))
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// TestGeneratedKeyDoesNotLicenseNetHTTPReplay measures net/http's own
// replay rule underneath the client link: net/http sends a request again on
// a broken reused connection when it is replayable, and a POST with GetBody
// is replayable once it carries an Idempotency-Key. A generated key toward a
// host not declared to honour keys must not make it so: the handler runs
// once, on fresh and reused connections, over HTTP/1.1 and HTTP/2. A key
// the caller set (WithKey), or a host declared with KeysHonored, keeps
// net/http's replay, which is then the server's to deduplicate.
func TestGeneratedKeyDoesNotLicenseNetHTTPReplay(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, reused := range []bool{false, true} {
			name := proto + "/fresh"
			if reused {
				name = proto + "/reused"
			}
			t.Run(name, func(t *testing.T) {
				s := newClosingServer(t, proto == "HTTP/2")
				rt := idempotency.NewTransport(s.base(t), idempotency.Config{})
				if reused {
					s.warm(t, rt)
				}
				err := s.post(t, rt, context.Background())
				require.Error(t, err, "the connection was dropped")
				assert.EqualValues(t, 1, s.runs.Load(), "the handler ran once: %v", err)
			})
		}
	}

	// The contrast, which shows the measure can fail: net/http's replay is
	// real for a licensed key on a reused HTTP/1.1 connection.
	licensed := []struct {
		name string
		cfg  idempotency.Config
		ctx  context.Context
	}{
		{"caller key", idempotency.Config{}, idempotency.WithKey(context.Background(), "order-42")},
		{"host honours keys", idempotency.Config{KeysHonored: true}, context.Background()},
	}
	for _, l := range licensed {
		t.Run("HTTP/1.1/reused/"+l.name, func(t *testing.T) {
			s := newClosingServer(t, false)
			rt := idempotency.NewTransport(s.base(t), l.cfg)
			s.warm(t, rt)
			require.Error(t, s.post(t, rt, l.ctx))
			assert.EqualValues(t, 2, s.runs.Load(), "net/http replayed the keyed POST once")
		})
	}
}

// TestGeneratedKeyOnTheWire reads the raw HTTP/1.1 request: the generated
// key goes out under the lower-case name (header names are
// case-insensitive, so every server reads it as Idempotency-Key), a key
// toward a host that honours keys and a caller's key under the canonical
// one; and a server's parser finds all of them.
func TestGeneratedKeyOnTheWire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	heads := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				head.WriteString(line)
				if err != nil || line == "\r\n" {
					break
				}
			}
			heads <- head.String()
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()

	tests := []struct {
		name string
		cfg  idempotency.Config
		ctx  context.Context
		line string // the header's name as written
	}{
		{"generated", idempotency.Config{}, context.Background(), "idempotency-key: "},
		{"generated, host honours keys", idempotency.Config{KeysHonored: true}, context.Background(), "Idempotency-Key: "},
		{"caller key", idempotency.Config{}, idempotency.WithKey(context.Background(), "job-7"), "Idempotency-Key: "},
		{"generated, X- name", idempotency.Config{Header: "X-Idempotency-Key"}, context.Background(), "x-idempotency-key: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			rt := idempotency.NewTransport(tr, tt.cfg)
			req, _ := http.NewRequestWithContext(tt.ctx, http.MethodPost, "http://"+ln.Addr().String()+"/", strings.NewReader("x"))
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			head := <-heads
			key := idempotency.ResponseKey(resp)
			require.NotEmpty(t, key, "the caller can read the key")
			assert.Contains(t, head, "\r\n"+tt.line+key+"\r\n")
			assert.Equal(t, 1, strings.Count(strings.ToLower(head), "idempotency-key:"), "one key line")

			parsed, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
			require.NoError(t, err)
			got := parsed.Header.Get(idempotency.HeaderKey)
			if tt.cfg.Header != "" {
				got = parsed.Header.Get(tt.cfg.Header)
			}
			assert.Equal(t, key, got, "a server reads the key under its canonical name")
		})
	}
}

package idempotency_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The request body the middleware reads, fingerprints and restores for the
// handler, behind other middleware that changes it.

// gunzip is outer middleware that decompresses gzip request bodies the
// way many do: it replaces the body and leaves ContentLength alone (the
// compressed length, now smaller than what the body yields).
func gunzip(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = zr
		}
		next.ServeHTTP(w, r)
	})
}

// gzipped returns s compressed.
func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.String()
}

// TestMiddlewareBodyBehindOuterMiddleware: the handler gets every byte the
// body yields, whatever ContentLength says, and a body over an outer
// http.MaxBytesHandler's limit is 413, as over the middleware's own.
func TestMiddlewareBodyBehindOuterMiddleware(t *testing.T) {
	plain := strings.Repeat("pepperoni ", 1000) // compresses to far less
	tests := []struct {
		name       string
		outer      func(http.Handler) http.Handler
		body       string
		header     []string
		wantStatus int
		wantBody   string // what the handler received, for 201
		wantDec    idempotency.Decision
	}{
		{
			name:       "decompressed body longer than ContentLength",
			outer:      gunzip,
			body:       gzipped(t, plain),
			header:     []string{"Content-Encoding", "gzip"},
			wantStatus: http.StatusCreated,
			wantBody:   plain,
			wantDec:    idempotency.DecisionExecuted,
		},
		{
			name: "over an outer MaxBytesHandler",
			outer: func(h http.Handler) http.Handler {
				return http.MaxBytesHandler(h, 100)
			},
			body:       plain,
			wantStatus: http.StatusRequestEntityTooLarge,
			wantDec:    idempotency.DecisionBodyTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &created{}
			var (
				mu  sync.Mutex
				got []idempotency.Decision
			)
			srv := httptest.NewServer(tt.outer(idempotency.Middleware(nil, idempotency.MiddlewareConfig{
				Logger: quiet,
				OnDecision: func(_ *http.Request, d idempotency.Decision) {
					mu.Lock()
					got = append(got, d)
					mu.Unlock()
				},
			})(h)))
			defer srv.Close()
			req, err := http.NewRequest("POST", srv.URL, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Idempotency-Key", "k")
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			r := result{resp.StatusCode, resp.Header, string(b)}
			assert.Equal(t, tt.wantStatus, r.status, r.body)
			if tt.wantStatus == http.StatusCreated {
				assert.Equal(t, len(tt.wantBody), len(r.body), "the handler got every byte")
				assert.Equal(t, tt.wantBody, r.body)
			} else {
				assert.Equal(t, idempotency.ProblemBodyTooLarge, r.problemType())
			}
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []idempotency.Decision{tt.wantDec}, got, "decisions, read after the response")
		})
	}
}

// TestMiddlewareBodyGrowsAsBytesArrive: a client that declares a large
// Content-Length and sends little costs the server what it sent, not what
// it declared. 48 connections declaring 1 MiB each and sending 10 bytes
// once grew the heap by 48 MiB; the bound here is 8 MiB (the connections'
// own buffers and goroutines take about 1 MiB).
func TestMiddlewareBodyGrowsAsBytesArrive(t *testing.T) {
	const conns = 48
	var reading sync.WaitGroup
	reading.Add(conns)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &firstRead{ReadCloser: r.Body, done: reading.Done}
		idempotency.Middleware(nil, idempotency.MiddlewareConfig{Logger: quiet})(&created{}).ServeHTTP(w, r)
	}))
	defer srv.Close()

	before := heapInUse()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
		_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k%d\r\nContent-Length: %d\r\n\r\n0123456789", i, 1<<20)
		require.NoError(t, err)
	}
	reading.Wait() // every handler has its buffer and waits for more bytes
	grown := heapInUse() - before
	t.Logf("heap grew by %d KiB for %d connections", grown>>10, conns)
	assert.Less(t, grown, int64(8<<20))
}

// firstRead is a request body that calls done on its first Read that
// returns data (so after readBody allocated its buffer).
type firstRead struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if n > 0 || err != nil {
		f.once.Do(f.done)
	}
	return n, err
}

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

package idempotency_test

// Two callers that send the same key and body must never share a stored
// response: tests of the default scope against a real TLS server that
// asks for client certificates.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientCert returns a new self-signed client certificate named cn.
func clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// account is a handler that creates an account for whoever calls it and
// sets that caller's session cookie: exactly what must not leak.
type account struct{ runs atomic.Int64 }

func (a *account) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.runs.Add(1)
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Set-Cookie", fmt.Sprintf("session=secret-%d", n))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "account %d", n)
}

func TestMiddlewareSeparatesCallers(t *testing.T) {
	alice, bob := clientCert(t, "alice"), clientCert(t, "bob")
	tests := []struct {
		name string
		// first and second shape the two callers' requests.
		first, second func(*http.Request)
		// certs are the callers' client certificates, if any.
		certs [2]*tls.Certificate
	}{
		{name: "cookies",
			first:  func(r *http.Request) { r.Header.Set("Cookie", "session=alice") },
			second: func(r *http.Request) { r.Header.Set("Cookie", "session=bob") }},
		{name: "API keys",
			first:  func(r *http.Request) { r.Header.Set("X-API-Key", "alice-key") },
			second: func(r *http.Request) { r.Header.Set("X-API-Key", "bob-key") }},
		{name: "proxy credentials",
			first:  func(r *http.Request) { r.Header.Set("Proxy-Authorization", "Basic YWxpY2U6") },
			second: func(r *http.Request) { r.Header.Set("Proxy-Authorization", "Basic Ym9iOg==") }},
		{name: "client certificates", certs: [2]*tls.Certificate{&alice, &bob}},
		{name: "certificate and none", certs: [2]*tls.Certificate{&alice, nil}},
		{name: "virtual hosts",
			first:  func(r *http.Request) { r.Host = "shop-a.example" },
			second: func(r *http.Request) { r.Host = "shop-b.example" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &account{}
			srv := httptest.NewUnstartedServer(idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}),
				idempotency.MiddlewareConfig{Logger: quiet})(h))
			srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
			srv.StartTLS()
			defer srv.Close()

			var clients [2]*http.Client
			for i, cert := range tt.certs {
				tr := srv.Client().Transport.(*http.Transport).Clone()
				if cert != nil {
					tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
				}
				defer tr.CloseIdleConnections()
				clients[i] = &http.Client{Transport: tr}
			}
			send := func(i int) result {
				req, err := http.NewRequest("POST", srv.URL+"/accounts", strings.NewReader(`{"plan":"basic"}`))
				require.NoError(t, err)
				req.Header.Set("Idempotency-Key", "shared-key")
				req.Header.Set("Content-Type", "application/json")
				if f := []func(*http.Request){tt.first, tt.second}[i]; f != nil {
					f(req)
				}
				resp, err := clients[i].Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				return result{resp.StatusCode, resp.Header, string(b)}
			}

			first, second := send(0), send(1)
			assert.Equal(t, 201, first.status)
			assert.Equal(t, "account 1", first.body)
			assert.Equal(t, 201, second.status)
			assert.Equal(t, "account 2", second.body, "the second caller's own run, not the first's response")
			assert.Empty(t, second.header.Get(idempotency.HeaderReplayed))
			assert.Equal(t, "session=secret-2", second.header.Get("Set-Cookie"), "never the first caller's cookie")

			// Each caller's retry gets its own stored response.
			for i, want := range []string{"account 1", "account 2"} {
				again := send(i)
				assert.Equal(t, want, again.body)
				assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))
			}
			assert.EqualValues(t, 2, h.runs.Load())
		})
	}
}

// TestMiddlewareScopeFullFailsClosed: callers without credentials that
// fill their share of the store get 503 with Retry-After; they can neither
// evict another caller's stored response (whose retry would then run its
// handler again) nor keep other callers out.
func TestMiddlewareScopeFullFailsClosed(t *testing.T) {
	large := strings.Repeat("r", 4<<10)
	var runs atomic.Int64
	store := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxBytes: 256 << 10})
	hs := newHarnessOn(t, store, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.WriteHeader(201)
		if r.URL.Path == "/large" {
			io.WriteString(w, large)
		}
	}))

	first := hs.do("POST", "/small", "x", "Idempotency-Key", "alice-1", "Authorization", "Bearer alice")
	require.Equal(t, 201, first.status)
	refused := 0
	for i := range 70 {
		r := hs.do("POST", "/large", "x", "Idempotency-Key", fmt.Sprint("anon-", i))
		switch r.status {
		case 201:
		case 503:
			refused++
			assert.Equal(t, idempotency.ProblemUnavailable, r.problemType())
			assert.Equal(t, "1", r.header.Get("Retry-After"))
		default:
			t.Fatalf("anonymous request %d: %d %s", i, r.status, r.body)
		}
	}
	assert.Positive(t, refused, "the anonymous scope holds its share and no more")
	again := hs.do("POST", "/small", "x", "Idempotency-Key", "alice-1", "Authorization", "Bearer alice")
	assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed), "alice's record is still there")
	other := hs.do("POST", "/small", "x", "Idempotency-Key", "bob-1", "Authorization", "Bearer bob")
	assert.Equal(t, 201, other.status, "another caller still gets in")
	assert.EqualValues(t, 1+70-refused+1, runs.Load())
}

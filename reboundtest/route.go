package reboundtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/rebound-http/rebound/internal/hostname"
)

// ErrNoRoute is matched by the error of a request, through a transport
// made by Route, to a host that has no route: such a transport never
// reaches the network beyond its test servers.
var ErrNoRoute = errors.New("reboundtest: no route to a test server for this host")

// Route returns a base transport for a rebound chain under test that
// sends the requests for each host named in routes to its test server,
// so the code under test keeps its production URLs
// ("https://payments.test/v1/charges") and the chain sees the real host
// name: its host policy, breaker, budget and admission are the ones
// production would use, not the default policy's for 127.0.0.1.
//
//	srv := httptest.NewTLSServer(handler)
//	defer srv.Close()
//	base, err := reboundtest.Route(map[string]*httptest.Server{"payments.test": srv})
//	require.NoError(t, err)
//	rt := rebound.NewTransport(base, append(policyFileOpts, reboundtest.NoWait())...)
//	defer rt.CloseIdleConnections()
//	client := &http.Client{Transport: rt}
//	resp, err := client.Post("https://payments.test/v1/charges", ...)
//
// A key is a host name ("payments.test", every port) or a host and port
// ("payments.test:8443", that port only; a URL without a port has its
// scheme's), in any spelling a URL allows (case, trailing dot, Unicode).
// A name with its port wins over the name alone. A server made with
// httptest.NewTLSServer is reached over TLS, verified against its own
// certificate, for https URLs; one made with httptest.NewServer for http
// URLs; the other scheme fails with an error that says which to use.
// Both speak HTTP/1.1 through the route. A request to a host without a
// route fails, unsent, with an error matching ErrNoRoute.
//
// Invalid routes (an empty or malformed key, a nil or unstarted server,
// a key given twice in two spellings) are an error, and no transport.
// Close the transport's idle connections (CloseIdleConnections of the
// transport or of the chain over it) before a leak check.
func Route(routes map[string]*httptest.Server) (*http.Transport, error) {
	table := make(map[string]target, len(routes))
	spelt := make(map[string]string, len(routes))
	for key, srv := range routes {
		k, err := routeKey(key)
		if err != nil {
			return nil, fmt.Errorf("reboundtest.Route: %q: %w", key, err)
		}
		if srv == nil || srv.Listener == nil || srv.URL == "" {
			return nil, fmt.Errorf("reboundtest.Route: %q: the server is nil or not started (use httptest.NewServer or NewTLSServer)", key)
		}
		if first, dup := spelt[k]; dup {
			a, b := min(first, key), max(first, key) // map order is random; the message is not
			return nil, fmt.Errorf("reboundtest.Route: %q and %q name the same host (%s)", a, b, k)
		}
		spelt[k] = key
		t := target{addr: srv.Listener.Addr().String(), url: srv.URL}
		if cert := srv.Certificate(); cert != nil && srv.TLS != nil {
			t.tls = &tls.Config{RootCAs: x509.NewCertPool(), NextProtos: []string{"http/1.1"}}
			t.tls.RootCAs.AddCert(cert)
			// The test certificate names example.com and the loopback
			// addresses, not the routed host: verify it under its own name.
			t.tls.ServerName = "127.0.0.1"
			if len(cert.DNSNames) > 0 {
				t.tls.ServerName = cert.DNSNames[0]
			}
		}
		table[k] = t
	}
	r := &router{table: table, dialer: &net.Dialer{Timeout: 10 * time.Second}}
	base := cleanhttp.DefaultPooledTransport()
	base.Proxy = nil
	base.DialContext = r.dial
	base.DialTLSContext = r.dialTLS
	return base, nil
}

// target is where a routed host's connections go.
type target struct {
	addr string      // the server's listener
	url  string      // for messages
	tls  *tls.Config // nil for a plain-HTTP server
}

type router struct {
	table  map[string]target // routeKey → target
	dialer *net.Dialer
}

// routeKey checks a key of Route and returns its canonical form: the
// canonical name, and ":port" when it names one.
func routeKey(key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/?#@*") {
		return "", errors.New(`a route is a host name, with an optional port ("payments.test", "payments.test:8443"), without scheme, path or wildcard`)
	}
	name, port := key, ""
	if h, p, err := net.SplitHostPort(key); err == nil {
		n, perr := strconv.ParseUint(p, 10, 16)
		if perr != nil || n == 0 {
			return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		name, port = h, strconv.FormatUint(n, 10)
		if strings.Contains(h, ":") {
			name = "[" + h + "]"
		}
	}
	if err := hostname.Check(name); err != nil {
		return "", err
	}
	if port != "" {
		return hostname.Name(name) + ":" + port, nil
	}
	return hostname.Name(name), nil
}

// lookup returns the target of a dial to addr (host:port, as net/http
// dials it).
func (r *router) lookup(addr string) (target, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return target{}, fmt.Errorf("%w: %q", ErrNoRoute, addr)
	}
	name := host
	if strings.Contains(host, ":") {
		name = "[" + host + "]"
	}
	name = hostname.Name(name)
	if t, ok := r.table[name+":"+port]; ok {
		return t, nil
	}
	if t, ok := r.table[name]; ok {
		return t, nil
	}
	return target{}, fmt.Errorf("%w: %s", ErrNoRoute, addr)
}

func (r *router) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	t, err := r.lookup(addr)
	if err != nil {
		return nil, err
	}
	if t.tls != nil {
		return nil, fmt.Errorf("reboundtest: %s is routed to a TLS test server (%s): use an https URL, or httptest.NewServer", addr, t.url)
	}
	return r.dialer.DialContext(ctx, "tcp", t.addr)
}

func (r *router) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	t, err := r.lookup(addr)
	if err != nil {
		return nil, err
	}
	if t.tls == nil {
		return nil, fmt.Errorf("reboundtest: %s is routed to a plain-HTTP test server (%s): use an http URL, or httptest.NewTLSServer", addr, t.url)
	}
	conn, err := r.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, t.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

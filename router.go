package rebound

import (
	"net"
	"net/http"
	"strings"
)

// router sends each request through the chain of the host policy that
// matches its host, or through the default chain. It exists only when host
// policies were given, so a client without them pays nothing.
type router struct {
	exact    map[string]*chain // lower-case hostname → chain
	suffixes []suffixRoute     // "*.example.com" patterns, longest first
	fallback *chain
}

type suffixRoute struct {
	dotSuffix string // ".example.com"
	chain     *chain
}

// RoundTrip routes req by its URL's hostname.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return r.fallback.rt.RoundTrip(req)
	}
	return r.routeHost(req.URL.Hostname()).rt.RoundTrip(req)
}

// routeHost returns the chain for a hostname (no port): an exact pattern
// first, then the longest matching suffix, compared case-insensitively.
func (r *router) routeHost(host string) *chain {
	if c, ok := r.exact[host]; ok {
		return c
	}
	if c, ok := r.exact[strings.ToLower(host)]; ok {
		return c
	}
	for _, s := range r.suffixes {
		if len(host) > len(s.dotSuffix) && strings.EqualFold(host[len(host)-len(s.dotSuffix):], s.dotSuffix) {
			return s.chain
		}
	}
	return r.fallback
}

// hostname strips a port from host ("example.com:443" → "example.com").
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// validPattern reports whether p is a host pattern NewTransport accepts: a
// hostname ("api.example.com") or "*." and a hostname ("*.example.com").
func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if p == "" || strings.ContainsAny(p, "/:*@ ") {
		return false
	}
	return true
}

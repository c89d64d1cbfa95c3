package rebound

import (
	"net/http"
	"strings"
)

// router sends each request through the chain of the first host policy
// that matches its host, or through the default chain. It exists only when
// host policies were given, so a client without them pays nothing.
type router struct {
	exact    map[string]http.RoundTripper // hostname → chain
	suffixes []suffixRoute                // "*.example.com" patterns, longest first
	fallback http.RoundTripper
	closers  []http.RoundTripper
}

type suffixRoute struct {
	dotSuffix string // ".example.com"
	rt        http.RoundTripper
}

// RoundTrip routes req by its URL's hostname (port ignored, case-folded by
// the caller's URL parser as written: compared case-insensitively).
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.route(req).RoundTrip(req)
}

func (r *router) route(req *http.Request) http.RoundTripper {
	if req == nil || req.URL == nil {
		return r.fallback
	}
	host := req.URL.Hostname()
	if rt, ok := r.exact[host]; ok {
		return rt
	}
	if rt, ok := r.exact[strings.ToLower(host)]; ok {
		return rt
	}
	for _, s := range r.suffixes {
		if len(host) > len(s.dotSuffix) && strings.EqualFold(host[len(host)-len(s.dotSuffix):], s.dotSuffix) {
			return s.rt
		}
	}
	return r.fallback
}

// CloseIdleConnections closes the idle connections of every chain.
func (r *router) CloseIdleConnections() {
	for _, rt := range r.closers {
		if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
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

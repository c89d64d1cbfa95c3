package rebound

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/rebound-http/rebound/internal/hostname"
)

// router sends each request through the chain of the host policy that
// matches its host, or through the default chain. It exists only when host
// policies were given, so a client without them pays nothing. Patterns and
// hosts are compared in the canonical form of internal/hostname, the form
// the breaker and the budget key hosts by, so a host cannot reach one
// policy in one spelling and another policy in another.
type router struct {
	exact    map[string]*chain // canonical host name → chain
	suffixes []suffixRoute     // "*.example.com" patterns, longest first
	fallback *chain
}

type suffixRoute struct {
	dotSuffix string // ".example.com", canonical
	chain     *chain
}

// RoundTrip routes req by its URL's host name.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return r.fallback.rt.RoundTrip(req)
	}
	return r.routeHost(hostname.Name(req.URL.Host)).rt.RoundTrip(req)
}

// routeHost returns the chain for a canonical host name (no port): an
// exact pattern first, then the longest matching suffix.
func (r *router) routeHost(name string) *chain {
	if c, ok := r.exact[name]; ok {
		return c
	}
	for _, s := range r.suffixes {
		if len(name) > len(s.dotSuffix) && strings.HasSuffix(name, s.dotSuffix) {
			return s.chain
		}
	}
	return r.fallback
}

// route is a checked host pattern with its policy.
type route struct {
	pattern  string // as given
	name     string // canonical host name, without "*."
	wildcard bool
	policy   Policy
}

// compilePatterns checks and canonicalises the host patterns, in order,
// and returns their routes, or the errors of invalid patterns and
// policies and of patterns that name the same hosts as an earlier one.
func compilePatterns(hosts []hostOption) ([]route, []error) {
	var (
		routes []route
		errs   []error
		seen   = make(map[string]string, len(hosts)) // canonical pattern → first pattern
	)
	for _, h := range hosts {
		where := fmt.Sprintf("WithHostPolicy(%q)", h.pattern)
		name, wildcard, err := canonicalPattern(h.pattern)
		if err != nil {
			errs = append(errs, &ConfigError{Pattern: h.pattern, Err: fmt.Errorf("%w: %w", ErrInvalidPattern, err), where: where})
			continue
		}
		key := name
		if wildcard {
			key = "*." + name
		}
		if first, ok := seen[key]; ok {
			errs = append(errs, &ConfigError{Pattern: h.pattern, where: where, Err: duplicatePattern(h.pattern, first, key)})
			continue
		}
		seen[key] = h.pattern
		if perr := checkPolicy(where, h.pattern, h.policy); perr != nil {
			errs = append(errs, perr...)
			continue
		}
		routes = append(routes, route{pattern: h.pattern, name: name, wildcard: wildcard, policy: h.policy})
	}
	return routes, errs
}

// duplicatePattern is the error of a pattern that names the hosts an
// earlier one named.
func duplicatePattern(pattern, first, canonical string) error {
	if pattern == first {
		return fmt.Errorf("%w: given twice", ErrDuplicatePattern)
	}
	return fmt.Errorf("%w: %q is the same as %q (both %s)", ErrDuplicatePattern, pattern, first, canonical)
}

// ErrInvalidPattern is matched by the error of a host pattern that is not
// one (see WithHostPolicy).
var ErrInvalidPattern = errors.New("invalid host pattern")

// ErrDuplicatePattern is matched by the error of a host pattern that names
// the same hosts as another, in canonical form ("API.example.com" and
// "api.example.com."), which New and ParsePolicyFile refuse rather than let
// one of them win.
var ErrDuplicatePattern = errors.New("host pattern duplicated")

// canonicalPattern checks a host pattern (see WithHostPolicy) and returns
// its canonical host name and whether it is a "*." suffix pattern.
func canonicalPattern(p string) (name string, wildcard bool, err error) {
	rest, wildcard := strings.CutPrefix(p, "*.")
	switch {
	case p == "":
		return "", false, errors.New("empty host pattern")
	case p == "*":
		return "", false, errors.New(`"*" is not a host pattern: WithPolicy sets the policy of every host`)
	case strings.Contains(p, "://"):
		return "", false, errors.New("a host pattern is a host name, without a scheme (api.example.com, *.example.com)")
	case strings.ContainsAny(rest, "*"):
		return "", false, errors.New(`a wildcard is allowed only as a leading "*." (*.example.com)`)
	case strings.ContainsAny(rest, "/?#@"):
		return "", false, errors.New("a host pattern is a host name, without a path, query or user")
	}
	if err := hostname.Check(rest); err != nil {
		if hostHasPort(rest) {
			return "", false, errors.New("a host pattern has no port: it matches every port of its host")
		}
		return "", false, err
	}
	name = hostname.Name(rest)
	if wildcard {
		if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
			return "", false, errors.New(`an IP address has no subdomains: "*." needs a host name`)
		}
	}
	return name, wildcard, nil
}

// hostHasPort reports whether a host that is not a valid name looks like
// a name or address with a port.
func hostHasPort(h string) bool {
	if strings.HasPrefix(h, "[") {
		return strings.Contains(h, "]:")
	}
	i := strings.LastIndexByte(h, ':')
	return i >= 0 && strings.IndexByte(h[:i], ':') < 0
}

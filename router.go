package rebound

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
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
	exact     map[string]*chain            // canonical host name → chain
	exactPort map[string]map[string]*chain // canonical host name → port → chain
	suffixes  []suffixRoute                // "*.example.com" patterns, longest first, a port before none
	ports     bool                         // some pattern names a port
	fallback  *chain
}

type suffixRoute struct {
	dotSuffix string // ".example.com", canonical
	port      string // "" for every port
	chain     *chain
}

// RoundTrip routes req by its URL's host name, and its port when some
// pattern names one.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return r.fallback.rt.RoundTrip(req)
	}
	var port string
	if r.ports {
		port = urlPort(req.URL.Scheme, req.URL.Port())
	}
	return r.routeHost(hostname.Name(req.URL.Host), port).rt.RoundTrip(req)
}

// urlPort is the port a request goes to: port as written, else the
// scheme's default ("" for a scheme without one).
func urlPort(scheme, port string) string {
	if port != "" {
		return port
	}
	switch {
	case strings.EqualFold(scheme, "https"):
		return "443"
	case strings.EqualFold(scheme, "http"):
		return "80"
	}
	return ""
}

// routeHost returns the chain for a canonical host name and the port the
// request goes to ("" when not known): an exact pattern with that port
// first, then an exact pattern, then the longest matching suffix (one
// naming the port before one that does not).
func (r *router) routeHost(name, port string) *chain {
	if port != "" && r.exactPort != nil {
		if c, ok := r.exactPort[name][port]; ok {
			return c
		}
	}
	if c, ok := r.exact[name]; ok {
		return c
	}
	for _, s := range r.suffixes {
		if len(name) > len(s.dotSuffix) && strings.HasSuffix(name, s.dotSuffix) && (s.port == "" || s.port == port) {
			return s.chain
		}
	}
	return r.fallback
}

// add routes the hosts of rt to c.
func (r *router) add(rt route, c *chain) {
	if rt.port != "" {
		r.ports = true
	}
	switch {
	case rt.wildcard:
		r.suffixes = append(r.suffixes, suffixRoute{dotSuffix: "." + rt.name, port: rt.port, chain: c})
	case rt.port != "":
		if r.exactPort == nil {
			r.exactPort = make(map[string]map[string]*chain)
		}
		if r.exactPort[rt.name] == nil {
			r.exactPort[rt.name] = make(map[string]*chain)
		}
		r.exactPort[rt.name][rt.port] = c
	default:
		r.exact[rt.name] = c
	}
}

// route is a checked host pattern with its policy.
type route struct {
	pattern  string // as given
	name     string // canonical host name, without "*." and port
	port     string // decimal, without leading zeros; "" for every port
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
		name, port, wildcard, err := canonicalPattern(h.pattern)
		if err != nil {
			errs = append(errs, &ConfigError{Pattern: h.pattern, Err: fmt.Errorf("%w: %w", ErrInvalidPattern, err), where: where})
			continue
		}
		key := patternKey(name, port, wildcard)
		if first, ok := seen[key]; ok {
			errs = append(errs, &ConfigError{Pattern: h.pattern, where: where, Err: duplicatePattern(h.pattern, first, key)})
			continue
		}
		seen[key] = h.pattern
		if perr := checkPolicy(where, h.pattern, h.policy); perr != nil {
			errs = append(errs, perr...)
			continue
		}
		routes = append(routes, route{pattern: h.pattern, name: name, port: port, wildcard: wildcard, policy: h.policy})
	}
	return routes, errs
}

// patternKey is the canonical text of a pattern, which two patterns
// naming the same hosts share.
func patternKey(name, port string, wildcard bool) string {
	key := name
	if wildcard {
		key = "*." + name
	}
	if port != "" {
		key += ":" + port
	}
	return key
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
// its canonical host name, its port ("" for every port) and whether it is
// a "*." suffix pattern.
func canonicalPattern(p string) (name, port string, wildcard bool, err error) {
	rest, wildcard := strings.CutPrefix(p, "*.")
	switch {
	case p == "":
		return "", "", false, errors.New("empty host pattern")
	case p == "*":
		return "", "", false, errors.New(`"*" is not a host pattern: WithPolicy sets the policy of every host`)
	case strings.Contains(p, "://"):
		return "", "", false, errors.New("a host pattern is a host name, without a scheme (api.example.com, *.example.com, localhost:8080)")
	case strings.ContainsAny(rest, "*"):
		return "", "", false, errors.New(`a wildcard is allowed only as a leading "*." (*.example.com)`)
	case strings.ContainsAny(rest, "/?#@"):
		return "", "", false, errors.New("a host pattern is a host name, without a path, query or user")
	}
	if hostname.Check(rest) != nil && hostHasPort(rest) {
		host, ps, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", false, err
		}
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 || ps[0] == '+' {
			return "", "", false, fmt.Errorf("port %q is not a number from 1 to 65535", ps)
		}
		port = strconv.FormatUint(n, 10)
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		rest = host
	}
	if err := hostname.Check(rest); err != nil {
		return "", "", false, err
	}
	name = hostname.Name(rest)
	if wildcard {
		if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
			return "", "", false, errors.New(`an IP address has no subdomains: "*." needs a host name`)
		}
	}
	return name, port, wildcard, nil
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

// splitPort returns host's port, "" when it names none.
func splitPort(host string) string {
	if !hostHasPort(host) {
		return ""
	}
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		return ""
	}
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return port
}

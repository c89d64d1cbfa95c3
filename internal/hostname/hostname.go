// Package hostname gives every link of the chain one form of a host, so the
// router, the breaker, the budget and what they report agree on which host
// a request is for.
//
// The canonical form of a URL host ("name" or "name:port") is:
//
//   - lower case;
//   - without a trailing dot ("example.com." is "example.com"; the root,
//     "." or "..", is ".");
//   - a Unicode name as its IDNA A-label ("bücher.example" is
//     "xn--bcher-kva.example"), by the same golang.org/x/net/idna profile
//     net/http uses to write the Host header;
//   - an IPv6 address in brackets, in its RFC 5952 text ("[::1]:8080";
//     a bare "0:0::1" is "[::1]");
//   - without an empty port ("example.com:" is "example.com") and, when the
//     scheme is known, without its default port (:80 for http, :443 for
//     https);
//   - valid UTF-8 without control characters, and at most MaxLen bytes (see
//     Safe): url.Parse accepts raw bytes in an IPv6 zone
//     ("http://[::1%25\xff]:1/"), and a canonical host reaches logs,
//     Prometheus labels and OpenTelemetry attributes, which must be valid
//     UTF-8, and a bounded number of bytes.
//
// An already canonical host is returned as is (or sliced, to drop a
// default port), so the common case allocates nothing.
package hostname

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Canonical returns the canonical form of host, a URL host with an
// optional port, when the scheme is not known: every rule of the package
// except the removal of a default port. A name that is not a valid IDNA
// name (net/http would send it unchanged) is lower-cased instead. Canonical
// never fails; Canonical(Canonical(h)) == Canonical(h).
func Canonical(host string) string { return ForScheme("", host) }

// ForScheme returns the canonical form of host as the host of a URL with
// the given scheme: Canonical, and without the scheme's default port
// (":80" for "http", ":443" for "https"; the scheme compared without
// regard to case). Any other scheme keeps every port.
func ForScheme(scheme, host string) string {
	if c, ok := fast(scheme, host); ok {
		if len(c) > MaxLen {
			return shorten(c)
		}
		return c
	}
	return Safe(full(scheme, host))
}

// MaxLen is the longest canonical host, in bytes. Every host a URL can
// reach is shorter: a DNS name has at most 253 bytes, plus a port
// (":65535"); an IPv6 literal at most 47 with its brackets, plus a zone
// (an interface name) and a port.
const MaxLen = 300

// hashLen is the length of the suffix that shorten gives a host over
// MaxLen: "~" and 16 hexadecimal digits.
const hashLen = 17

// Safe returns s as text that any log, label or attribute can carry:
// unchanged when it is valid UTF-8 without control characters and at most
// MaxLen bytes, as every host from a usable URL is. Otherwise each byte of
// an invalid UTF-8 sequence and each control character is written as
// \xhh (lower-case hexadecimal), and a result over MaxLen bytes keeps its
// first MaxLen-17 bytes (in lower-case ASCII) followed by "~" and the
// first 16 hexadecimal digits of its SHA-256, so two long hosts that
// differ only past the cut stay apart. Safe(Safe(s)) == Safe(s), and the
// result is never longer than MaxLen.
func Safe(s string) string {
	clean := true
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				clean = false
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || isControl(r) {
			clean = false
			break
		}
		i += n
	}
	if !clean {
		s = escape(s)
	}
	if len(s) > MaxLen {
		return shorten(s)
	}
	return s
}

// isControl reports whether r is a C1 control character (U+0080 to
// U+009F), which terminals interpret.
func isControl(r rune) bool { return r >= 0x80 && r < 0xa0 }

// escape writes each byte of an invalid UTF-8 sequence and each control
// character of s as \xhh.
func escape(s string) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r < 0x20 || r == 0x7f || r == utf8.RuneError && n == 1 || isControl(r) {
			for _, c := range []byte(s[i : i+n]) {
				b.WriteString(`\x`)
				b.WriteByte(digits[c>>4])
				b.WriteByte(digits[c&0xf])
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// shorten returns s, over MaxLen bytes, as its first MaxLen-hashLen bytes
// followed by "~" and 16 hexadecimal digits of its SHA-256. The kept
// bytes are made lower-case ASCII (any other byte becomes '?'), so the
// result is its own canonical form: no rule of the package changes a
// lower-case ASCII text with a '~' in it.
func shorten(s string) string {
	sum := sha256.Sum256([]byte(s))
	b := make([]byte, 0, MaxLen)
	for i := range MaxLen - hashLen {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c >= utf8.RuneSelf:
			c = '?'
		}
		b = append(b, c)
	}
	b = append(b, '~')
	return string(hex.AppendEncode(b, sum[:8]))
}

// full is ForScheme for any host, rule by rule.
func full(scheme, host string) string {
	if host == "" {
		return ""
	}
	name, port, bracketed := split(host)
	cname, v6 := canonicalName(name, bracketed)
	if port != "" && port == defaultPort(scheme) {
		port = ""
	}
	// Rebuild only what changed: the fast path returns host or a prefix.
	switch {
	case v6:
		if port == "" {
			return "[" + cname + "]"
		}
		return "[" + cname + "]:" + port
	case bracketed:
		// Brackets around something that is not an IPv6 address: kept,
		// so the result is not mistaken for a name with a port.
		if port == "" {
			return "[" + cname + "]"
		}
		return "[" + cname + "]:" + port
	case port == "":
		if len(cname) <= len(host) && host[:len(cname)] == cname {
			return host[:len(cname)]
		}
		return cname
	default:
		if len(cname)+1+len(port) == len(host) && host[:len(cname)] == cname {
			return host
		}
		return cname + ":" + port
	}
}

// FromURL returns the canonical host of u: ForScheme(u.Scheme, u.Host).
// It is "" for a nil URL or one without a host.
func FromURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return ForScheme(u.Scheme, u.Host)
}

// fast returns the canonical form of the common host, one pass over it:
// a lower-case ASCII name without a trailing dot, and an optional port.
// ok is false for any other host.
func fast(scheme, host string) (_ string, ok bool) {
	colon := -1
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		case c == ':' && colon < 0:
			colon = i
		default:
			return "", false
		}
	}
	name := host
	if colon >= 0 {
		name = host[:colon]
	}
	if name == "" || name[len(name)-1] == '.' || colon == len(host)-1 {
		return "", false
	}
	if colon >= 0 && host[colon+1:] == defaultPort(scheme) {
		return name, true
	}
	return host, true
}

// defaultPort returns the port a scheme implies, or "" if it implies none.
func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	switch {
	case strings.EqualFold(scheme, "http"):
		return "80"
	case strings.EqualFold(scheme, "https"):
		return "443"
	}
	return ""
}

// split cuts a URL host into its name and port. bracketed reports a name
// written in brackets ("[::1]:80"); the brackets are not part of name. A
// bare name with more than one colon is an IPv6 address without a port. A
// malformed bracketed host (no closing bracket, or text after it that is
// not a port) is one name with no port.
func split(host string) (name, port string, bracketed bool) {
	if host[0] == '[' {
		i := strings.LastIndexByte(host, ']')
		if i < 0 {
			return host, "", false
		}
		rest := host[i+1:]
		switch {
		case rest == "":
			return host[1:i], "", true
		case rest[0] == ':' && !strings.ContainsAny(rest[1:], "[]:"):
			return host[1:i], rest[1:], true
		}
		return host, "", false
	}
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[:i], ':') >= 0 {
		return host, "", false
	}
	return host[:i], host[i+1:], false
}

// canonicalName returns the canonical form of a host name without its port.
// v6 reports an IPv6 address, returned in RFC 5952 text without brackets.
func canonicalName(name string, bracketed bool) (_ string, v6 bool) {
	name = trimDots(name)
	if bracketed || strings.IndexByte(name, ':') >= 0 {
		if a, err := netip.ParseAddr(name); err == nil && a.Is6() {
			return a.String(), true
		}
	}
	upper, nonASCII := false, false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			nonASCII = true
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	switch {
	case nonASCII:
		if a, err := idna.Lookup.ToASCII(name); err == nil {
			// The mapping may have made a dot ("。" is "."), and an
			// A-label is lower case already.
			return trimDots(a), false
		}
		return trimDots(strings.ToLower(name)), false
	case upper:
		return strings.ToLower(name), false
	}
	return name, false
}

// trimDots removes trailing dots from a name; a name of dots only (the
// root) is ".".
func trimDots(name string) string {
	t := strings.TrimRight(name, ".")
	if t == "" && name != "" {
		return "."
	}
	return t
}

// Name returns the canonical form of host's name without its port:
// "API.example.com.:8080" is "api.example.com", "[::1]:80" is "[::1]". It
// is the name host patterns are matched against, and allocates nothing for
// a name already canonical.
func Name(host string) string {
	if c, ok := fast("", host); ok {
		if i := strings.IndexByte(c, ':'); i >= 0 {
			c = c[:i]
		}
		if len(c) > MaxLen {
			return shorten(c)
		}
		return c
	}
	if host == "" {
		return ""
	}
	name, _, bracketed := split(host)
	c, v6 := canonicalName(name, bracketed)
	if v6 || bracketed {
		return Safe("[" + c + "]")
	}
	return Safe(c)
}

// Check reports why name, a host name without a port, is not one a URL
// can carry to a server, or nil: an IP address (IPv6 with or without
// brackets), or dot-separated labels of 1 to 63 letters, digits, hyphens
// and underscores, at most 253 bytes in all once in canonical form, a
// Unicode name being valid IDNA. A trailing dot is allowed.
func Check(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		if a, err := netip.ParseAddr(name[1 : len(name)-1]); err == nil && a.Is6() {
			return nil
		}
		return fmt.Errorf("%q is not an IPv6 address", name)
	}
	if a, err := netip.ParseAddr(name); err == nil && a.Zone() == "" {
		return nil
	}
	if strings.IndexByte(name, ':') >= 0 {
		return fmt.Errorf("%q has a port or is not an address", name)
	}
	ascii := trimDots(name)
	if !isASCII(ascii) || hasALabel(ascii) {
		a, err := idna.Lookup.ToASCII(ascii)
		if err != nil {
			return fmt.Errorf("%q is not a valid international name: %v", name, err)
		}
		ascii = trimDots(a)
	}
	if ascii == "." {
		return errors.New("the root \".\" is not a host name")
	}
	if len(ascii) > 253 {
		return fmt.Errorf("host name of %d bytes is over 253", len(ascii))
	}
	for label := range strings.SplitSeq(ascii, ".") {
		if label == "" {
			return fmt.Errorf("%q has an empty label", name)
		}
		if len(label) > 63 {
			return fmt.Errorf("%q has a label of %d bytes, over 63", name, len(label))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q has the character %q, not allowed in a host name", name, rune(c))
			}
		}
	}
	return nil
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasALabel reports whether a name has a label in the IDNA "xn--" form,
// in any case.
func hasALabel(name string) bool {
	for label := range strings.SplitSeq(name, ".") {
		if len(label) >= 4 && strings.EqualFold(label[:4], "xn--") {
			return true
		}
	}
	return false
}

package hostname

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestForScheme(t *testing.T) {
	tests := []struct {
		name, scheme, host, want string
	}{
		{"empty", "http", "", ""},
		{"canonical name", "http", "api.example.com", "api.example.com"},
		{"upper case", "https", "API.Example.COM", "api.example.com"},
		{"trailing dot", "http", "svc.legacy.internal.", "svc.legacy.internal"},
		{"trailing dot and port", "http", "svc.legacy.internal.:8080", "svc.legacy.internal:8080"},
		{"only dots", "http", ".", "."},
		{"dots", "http", "...:80", "."},
		{"http default port", "http", "example.com:80", "example.com"},
		{"https default port", "https", "example.com:443", "example.com"},
		{"scheme in upper case", "HTTPS", "example.com:443", "example.com"},
		{"https keeps 80", "https", "example.com:80", "example.com:80"},
		{"http keeps 443", "http", "example.com:443", "example.com:443"},
		{"unknown scheme keeps port", "ftp", "example.com:21", "example.com:21"},
		{"no scheme keeps port", "", "example.com:443", "example.com:443"},
		{"other port", "http", "127.0.0.1:8080", "127.0.0.1:8080"},
		{"empty port", "http", "example.com:", "example.com"},
		{"unicode", "https", "bücher.example", "xn--bcher-kva.example"},
		{"unicode upper case", "https", "BÜCHER.example", "xn--bcher-kva.example"},
		{"unicode with port", "http", "bücher.example:8080", "xn--bcher-kva.example:8080"},
		{"unicode trailing dot and default port", "https", "bücher.example.:443", "xn--bcher-kva.example"},
		{"ideographic full stop", "https", "bücher。example。", "xn--bcher-kva.example"},
		{"A-label in upper case", "https", "XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"invalid IDNA is lower-cased", "http", "Ü_Ü.example", "ü_ü.example"},
		{"IPv6 with port", "http", "[::1]:8080", "[::1]:8080"},
		{"IPv6 default port", "http", "[::1]:80", "[::1]"},
		{"bare IPv6", "http", "::1", "[::1]"},
		{"IPv6 long form", "http", "[0:0:0:0:0:0:0:1]:8080", "[::1]:8080"},
		{"IPv6 upper case", "https", "[FE80::AB]", "[fe80::ab]"},
		{"IPv6 zone kept", "http", "[fe80::1%eth0]:8080", "[fe80::1%eth0]:8080"},
		{"IPv4", "http", "127.0.0.1", "127.0.0.1"},
		{"brackets around a name", "http", "[Host]:80", "[host]"},
		{"unclosed bracket", "http", "[::1:80", "[::1:80"},
		{"invalid byte in an IPv6 zone", "http", "[::1%\xff]:1", `[::1%\xff]:1`},
		{"control character in a zone", "http", "[fe80::1%a\nb]", `[fe80::1%a\x0ab]`},
		{"C1 control character", "http", "a\u0085b.example", `a\xc2\x85b.example`},
		{"longest kept", "http", strings.Repeat("a", MaxLen), strings.Repeat("a", MaxLen)},
		{"too long", "http", strings.Repeat("a", MaxLen+1), strings.Repeat("a", MaxLen-17) + "~eb22b48c636cd5d3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ForScheme(tt.scheme, tt.host); got != tt.want {
				t.Errorf("ForScheme(%q, %q) = %q, want %q", tt.scheme, tt.host, got, tt.want)
			}
		})
	}
}

func TestCanonicalKeepsPorts(t *testing.T) {
	for host, want := range map[string]string{
		"Example.com:80":  "example.com:80",
		"example.com:443": "example.com:443",
		"example.com.":    "example.com",
		"[::1]:443":       "[::1]:443",
	} {
		if got := Canonical(host); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", host, got, want)
		}
	}
}

// url.Parse accepts raw bytes in an IPv6 zone; the canonical host of such
// a URL is valid UTF-8, and so are the hosts of every URL it parses.
func TestFromURLInvalidZone(t *testing.T) {
	for _, raw := range []string{"http://[::1%25\xff]:1/", "http://[fe80::1%25\xc3\x28]/", "https://[::1%25\xed\xa0\x80]:443/"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v (the case this guards against is gone)", raw, err)
		}
		if !utf8.ValidString(u.Host) {
			got := FromURL(u)
			if !utf8.ValidString(got) || !strings.Contains(got, `\x`) {
				t.Errorf("FromURL(%q) = %q, want valid UTF-8 with the bad bytes escaped", raw, got)
			}
		}
	}
}

func TestSafe(t *testing.T) {
	long := strings.Repeat("é", MaxLen)
	for _, s := range []string{"", "a", "\xff", "é", long, long + "x", strings.Repeat("\xff", MaxLen)} {
		got := Safe(s)
		if !utf8.ValidString(got) || len(got) > MaxLen || Safe(got) != got {
			t.Errorf("Safe(%q) = %q: invalid, too long or not a fixed point", s, got)
		}
	}
	if Safe(long) == Safe(long+"x") {
		t.Error("two long texts that differ past the cut share a Safe form")
	}
}

func TestFromURL(t *testing.T) {
	if got := FromURL(nil); got != "" {
		t.Errorf("FromURL(nil) = %q", got)
	}
	for raw, want := range map[string]string{
		"http://SVC.legacy.internal.:80/x": "svc.legacy.internal",
		"https://b%C3%BCcher.example/":     "xn--bcher-kva.example",
		"http://[::1]:8080/":               "[::1]:8080",
		"https://example.com:443":          "example.com",
		"/relative":                        "",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := FromURL(u); got != want {
			t.Errorf("FromURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

// The hot paths (breaker and budget lookups, routing) call ForScheme on
// every attempt; a host already canonical, with or without a default port,
// must cost no allocation.
func TestForSchemeDoesNotAllocateForCanonicalHosts(t *testing.T) {
	for _, host := range []string{"api.example.com", "127.0.0.1:8080", "example.com:443", "example.com"} {
		if n := testing.AllocsPerRun(100, func() { _ = ForScheme("https", host) }); n != 0 {
			t.Errorf("ForScheme(https, %q): %v allocations, want 0", host, n)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"Example.COM.", "bücher.example:443", "[::1]:80", "::FFFF:1.2.3.4", "a:b:c", "[x]y", "。", ":80",
		"[::1%\xff]:1", "[FE80::1%\xc3]", "a\x00b", strings.Repeat("Ab.", 120) + ":80", "[fe80::1%" + strings.Repeat("É", 200) + "]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		for _, scheme := range []string{"", "http", "https"} {
			c := ForScheme(scheme, host)
			if !utf8.ValidString(c) || len(c) > MaxLen {
				t.Fatalf("ForScheme(%q, %q) = %q: invalid UTF-8 or over %d bytes", scheme, host, c, MaxLen)
			}
			if n := Name(host); !utf8.ValidString(n) || len(n) > MaxLen || Safe(n) != n {
				t.Fatalf("Name(%q) = %q: not safe", host, n)
			}
			if f, ok := fast(scheme, host); ok && f != full(scheme, host) {
				t.Fatalf("fast path gives %q for (%q, %q), the rules %q", f, scheme, host, full(scheme, host))
			}
			if again := ForScheme(scheme, c); again != c {
				t.Fatalf("ForScheme(%q, %q) = %q, but ForScheme of that is %q", scheme, host, c, again)
			}
			if host != "" && c == "" && !strings.HasPrefix(host, ":") {
				t.Fatalf("ForScheme(%q, %q) lost the host", scheme, host)
			}
			if !strings.Contains(c, "%") && utf8.ValidString(host) {
				if strings.ToLower(c) != c && !hasUpperPort(c) {
					t.Fatalf("ForScheme(%q, %q) = %q has upper case", scheme, host, c)
				}
			}
		}
		// Case and a trailing dot do not make another host.
		// (Brackets are for IPv6 addresses, which have colons; a malformed
		// bracketed host is one opaque name.)
		if host != "" && !strings.ContainsAny(host, ":%[]") {
			c := Canonical(host)
			if up := Canonical(asciiUpper(host)); up != c {
				t.Fatalf("Canonical(%q) = %q but Canonical(upper) = %q", host, c, up)
			}
			if dot := Canonical(host + "."); dot != c {
				t.Fatalf("Canonical(%q) = %q but Canonical(with dot) = %q", host, c, dot)
			}
		}
	})
}

// hasUpperPort reports whether the upper case in a canonical host is in its
// port, which is kept verbatim.
func hasUpperPort(c string) bool {
	i := strings.LastIndexByte(c, ':')
	return i >= 0 && strings.ToLower(c[:i]) == c[:i]
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func BenchmarkForScheme(b *testing.B) {
	for _, host := range []string{"127.0.0.1:8080", "API.example.com", "bücher.example"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ForScheme("http", host)
			}
		})
	}
}

func TestName(t *testing.T) {
	for host, want := range map[string]string{
		"":                      "",
		"API.example.com.:8080": "api.example.com",
		"api.example.com":       "api.example.com",
		"[::1]:80":              "[::1]",
		"0:0::1":                "[::1]",
		"bücher.example:443":    "xn--bcher-kva.example",
		"127.0.0.1:8080":        "127.0.0.1",
	} {
		if got := Name(host); got != want {
			t.Errorf("Name(%q) = %q, want %q", host, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Name("127.0.0.1:8080") }); n != 0 {
		t.Errorf("Name of a canonical host: %v allocations", n)
	}
}

func TestCheck(t *testing.T) {
	for _, ok := range []string{"api.example.com", "API.example.com.", "_srv.example", "bücher.example", "xn--bcher-kva.example", "10.0.0.7", "[::1]", "::1", "localhost"} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v, want nil", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                              "empty host name",
		".":                             "the root",
		"a..b":                          "empty label",
		".a":                            "empty label",
		"a b":                           "the character ' '",
		"a:80":                          "has a port",
		"[::1]:80":                      "has a port",
		"[1.2.3.4]":                     "not an IPv6 address",
		"fe80::1%eth0":                  "has a port or is not an address",
		strings.Repeat("a", 64):         "label of 64 bytes",
		strings.Repeat("a.", 127) + "a": "over 253",
		"xn--a.example":                 "not a valid international name",
		"ü_x.example":                   "not a valid international name",
	} {
		err := Check(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want an error containing %q", name, err, want)
		}
	}
}

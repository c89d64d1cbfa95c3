package reboundtest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
)

// ErrTimeout is an attempt that timed out after its request was written,
// shaped like net/http's: it reports Timeout, and the server may have
// processed the request.
var ErrTimeout error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// Fault is one rule of Faults: which attempts it hits and what it does to
// them. It does one thing (Err, Status or CutBody), after Latency; with
// none of the three it only delays. The zero value is invalid (its Rate
// is zero).
type Fault struct {
	// Host is the host whose attempts the rule hits: a URL host
	// ("api.example.com", "127.0.0.1:8080"; without a port it matches
	// every port), "*." and a suffix ("*.example.com", its subdomains), or
	// "" for every host. Compared in canonical form.
	Host string
	// Rate is the share of the host's attempts the rule hits, in (0, 1].
	Rate float64
	// Latency delays each attempt hit, before its fault (or before it
	// goes, with no fault), or until the request's context ends.
	Latency time.Duration
	// Err fails the attempt: ErrRefused sends nothing (a refused dial);
	// ErrReset, ErrTimeout or any other error is returned after the
	// request went to Next and its response was dropped, as when a
	// connection breaks while the server answers, so the server did the
	// work.
	Err error
	// Status answers the attempt with this status (100 to 599) instead
	// of sending it, as a proxy in front of the server would.
	Status int
	// RetryAfter, with Status, adds the wait hint "Retry-After: n", n the
	// seconds rounded up; zero adds none.
	RetryAfter time.Duration
	// CutBody sends the attempt and cuts its response's body short: it
	// ends after CutAfter bytes with io.ErrUnexpectedEOF.
	CutBody  bool
	CutAfter int64
}

// Faults is an http.RoundTripper that injects failures into the attempts
// it passes to Next, per host and per rate, for rehearsals in a real
// process: a staging service, behind a flag its operators control. Put it
// under the rebound chain, as its base, so the chain meets the faults as
// it would meet the network's:
//
//	faults := &reboundtest.Faults{Seed: 1}
//	rt := rebound.NewTransport(faults)
//	if *rehearse { // a flag of your own
//		err := faults.Set(
//			reboundtest.Fault{Host: "payments.internal", Rate: 0.3, Status: 503},
//			reboundtest.Fault{Rate: 0.05, Err: reboundtest.ErrReset},
//		)
//		...
//	}
//
// Rules are tried in order; each hits its Rate of the attempts it is
// tried on, and the first that hits applies. The draws are deterministic:
// the n-th attempt's draws depend only on Seed, n and the rule, so a
// sequential client meets the same faults in every run with one Seed.
//
// Off (no rules, the zero value's state, or Set with none) an attempt
// costs one atomic load and no allocation before it goes to Next. Faults
// is safe for concurrent use; Set may be called at any time, and each
// attempt uses the rules in force when it started.
type Faults struct {
	// Next sends the attempts; nil means a pooled transport from
	// go-cleanhttp, made on first use.
	Next http.RoundTripper
	// Seed fixes the draws; the zero value is a seed like any other.
	Seed uint64

	rules atomic.Pointer[[]Fault]
	n     atomic.Uint64 // attempts tried against rules
	def   atomic.Pointer[http.Transport]
}

// Set replaces the rules, or with none turns injection off. Invalid rules
// leave those in force and return an error naming the rule and field.
func (f *Faults) Set(rules ...Fault) error {
	for i, r := range rules {
		if err := r.check(); err != nil {
			return fmt.Errorf("reboundtest: Fault %d (Host %q): %w", i, r.Host, err)
		}
	}
	if len(rules) == 0 {
		f.rules.Store(nil)
		return nil
	}
	rs := make([]Fault, len(rules))
	for i, r := range rules {
		r.Host = canonicalRule(r.Host)
		rs[i] = r
	}
	f.rules.Store(&rs)
	return nil
}

// check reports what is wrong with r.
func (r Fault) check() error {
	switch {
	case !(r.Rate > 0 && r.Rate <= 1):
		return fmt.Errorf("Rate %v is not in (0, 1]", r.Rate)
	case r.Latency < 0:
		return fmt.Errorf("Latency %v is negative", r.Latency)
	case r.Status != 0 && (r.Status < 100 || r.Status > 599):
		return fmt.Errorf("Status %d is not in 100 to 599", r.Status)
	case r.RetryAfter < 0 || r.RetryAfter > 0 && r.Status == 0:
		return errors.New("RetryAfter needs a Status and may not be negative")
	case r.CutAfter < 0 || r.CutAfter > 0 && !r.CutBody:
		return errors.New("CutAfter needs CutBody and may not be negative")
	}
	n := 0
	for _, set := range []bool{r.Err != nil, r.Status != 0, r.CutBody} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("more than one of Err, Status and CutBody")
	}
	h := strings.TrimPrefix(r.Host, "*.")
	if strings.ContainsAny(h, "/?#@* ") || strings.Contains(r.Host, "://") || r.Host == "*." {
		return errors.New("not a host, \"*.\" and a suffix, or \"\"")
	}
	return nil
}

// canonicalRule writes a rule's Host in canonical form.
func canonicalRule(h string) string {
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		return "*." + hostname.Canonical(rest)
	}
	if h == "" {
		return ""
	}
	return hostname.Canonical(h)
}

// RoundTrip sends req to Next, or injects the fault of the first rule
// that hits it.
func (f *Faults) RoundTrip(req *http.Request) (*http.Response, error) {
	rules := f.rules.Load()
	if rules == nil || req == nil || req.URL == nil {
		return f.next().RoundTrip(req)
	}
	r := f.pick(*rules, hostname.FromURL(req.URL))
	if r == nil {
		return f.next().RoundTrip(req)
	}
	if r.Latency > 0 {
		if err := wait(req.Context(), r.Latency); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	switch {
	case r.Status != 0:
		closeBody(req)
		return injected(req, r), nil
	case r.Err != nil && classify.NotSent(r.Err):
		closeBody(req)
		return nil, r.Err
	case r.Err != nil:
		if resp, err := f.next().RoundTrip(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		return nil, r.Err
	}
	resp, err := f.next().RoundTrip(req)
	if err == nil && r.CutBody {
		resp.Body = &cutBody{rc: resp.Body, left: r.CutAfter}
	}
	return resp, err
}

// pick returns the rule that hits this attempt to host, or nil.
func (f *Faults) pick(rules []Fault, host string) *Fault {
	n := f.n.Add(1)
	for i := range rules {
		r := &rules[i]
		if !matches(r.Host, host) {
			continue
		}
		if r.Rate >= 1 || draw(f.Seed, n, uint64(i)) < r.Rate {
			return r
		}
	}
	return nil
}

// matches reports whether a rule's Host matches the canonical host.
func matches(rule, host string) bool {
	switch {
	case rule == "":
		return true
	case rule == host:
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
		if strings.Contains(name, ":") {
			name = "[" + name + "]"
		}
	}
	if suffix, ok := strings.CutPrefix(rule, "*"); ok {
		return strings.HasSuffix(host, suffix) || strings.HasSuffix(name, suffix)
	}
	return rule == name
}

// draw returns a number in [0, 1) that depends only on seed, the attempt
// n and the rule i (splitmix64 of their mix).
func draw(seed, n, i uint64) float64 {
	z := seed + n*0x9e3779b97f4a7c15 + i*0xbf58476d1ce4e5b9
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}

func (f *Faults) next() http.RoundTripper {
	if f.Next != nil {
		return f.Next
	}
	if t := f.def.Load(); t != nil {
		return t
	}
	f.def.CompareAndSwap(nil, cleanhttp.DefaultPooledTransport())
	return f.def.Load()
}

// CloseIdleConnections closes the idle connections of Next (or of the
// transport made for a nil Next), when it has that method.
func (f *Faults) CloseIdleConnections() {
	if f.Next != nil {
		if c, ok := f.Next.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
		return
	}
	if t := f.def.Load(); t != nil {
		t.CloseIdleConnections()
	}
}

// injected is the response of a Status rule.
func injected(req *http.Request, r *Fault) *http.Response {
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	if r.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(r.RetryAfter.Seconds())), 10))
	}
	const text = "injected by reboundtest.Faults\n"
	return &http.Response{
		Status: strconv.Itoa(r.Status) + " " + http.StatusText(r.Status), StatusCode: r.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: int64(len(text)), Request: req,
		Body: io.NopCloser(strings.NewReader(text)),
	}
}

// cutBody ends a body after left bytes with io.ErrUnexpectedEOF.
type cutBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		return n, io.EOF // shorter than the cut: nothing to cut
	}
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

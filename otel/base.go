package reboundotel

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Base returns a RoundTripper to place as the rebound chain's base, in
// front of next (nil means a pooled transport from go-cleanhttp): every
// attempt that reaches it gets a client span named after its method
// ("GET"), child of the span in the attempt's context (the caller's: the
// retry loop derives each attempt's context from the call's), and is
// timed in http.client.request.duration. The span carries
// http.request.method, server.address, server.port, url.scheme, url.full
// (without userinfo or query string), http.response.status_code, and
// error.type for a transport error (the classify reason: "connection
// refused", "timeout") or a status of 400 and above; attempts after the
// first carry http.request.resend_count (1 for the second attempt). The
// span ends when the response's body is read to its end or closed, or
// fails (its error then recorded), and carries rebound.body.duration, the
// seconds from the headers to then; it ends at once after an error, or
// for a response without a body. server.address is the canonical host
// (as rebound.Stats keys it: valid UTF-8, at most 300 bytes); on the
// metric, hosts past the first rebound.MaxStatsHosts are reported as
// rebound.OtherHost. The histogram times the attempt to its headers, as
// the semantic conventions define it.
func (in *Instrumentation) Base(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	return &base{next: next, in: in}
}

type base struct {
	next http.RoundTripper
	in   *Instrumentation
}

// CloseIdleConnections closes next's idle connections, when it has that
// method.
func (b *base) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (b *base) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return b.next.RoundTrip(req)
	}
	host := hostname.FromURL(req.URL)
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, b.in.methodAttrs(req.Method)...)
	attrs = append(attrs, semconv.URLScheme(req.URL.Scheme))
	metricAttrs := append(attrs[:len(attrs):len(attrs)], b.in.hosts.metricAttrs(host, req.URL.Scheme)...)
	attrs = append(attrs, hostAttrs(host, req.URL.Scheme)...)
	u := *req.URL
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	attrs = append(attrs, semconv.URLFull(strings.ToValidUTF8(u.String(), "\uFFFD")))
	if a := transport.AttemptFrom(req.Context()); a.N > 1 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(a.N-1))
	}
	name := req.Method
	if name == "" {
		name = http.MethodGet // as net/http sends it
	}
	if _, known := b.in.known[name]; !known {
		name = "HTTP"
	}
	ctx, span := b.in.tracer.Start(req.Context(), name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	out := req.WithContext(ctx)
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	b.in.propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))

	start := time.Now()
	resp, err := b.next.RoundTrip(out)
	elapsed := time.Since(start)

	end := make([]attribute.KeyValue, 0, 2)
	switch {
	case err != nil:
		end = append(end, semconv.ErrorTypeKey.String(classify.Classify(out, nil, err).Reason))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case resp != nil:
		end = append(end, semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.StatusCode >= 400 {
			code := strconv.Itoa(resp.StatusCode)
			end = append(end, semconv.ErrorTypeKey.String(code))
			span.SetStatus(codes.Error, "status "+code)
		}
	}
	span.SetAttributes(end...)
	b.in.duration.Record(ctx, elapsed.Seconds(), metric.WithAttributes(append(metricAttrs, end...)...))
	if err != nil || resp == nil || resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		span.End()
		return resp, err
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span, start: time.Now()}
	return resp, err
}

// BodyDurationKey is the seconds from an attempt's response headers to
// the end of its body (read to its end, closed, or failed), on the
// attempt's span.
const BodyDurationKey = attribute.Key("rebound.body.duration")

// spanBody ends an attempt's span when its body ends: read to its end,
// closed, or failed.
type spanBody struct {
	io.ReadCloser
	span  trace.Span
	start time.Time // when the headers came
	once  sync.Once
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.end(err)
	}
	return n, err
}

func (b *spanBody) Close() error {
	err := b.ReadCloser.Close()
	b.end(nil)
	return err
}

// end ends the span, once, recording a read error other than io.EOF.
func (b *spanBody) end(err error) {
	b.once.Do(func() {
		if err != nil && err != io.EOF {
			b.span.RecordError(err)
			b.span.SetStatus(codes.Error, "reading the body: "+err.Error())
		}
		b.span.SetAttributes(BodyDurationKey.Float64(time.Since(b.start).Seconds()))
		b.span.End()
	})
}

// defaultMethods are the methods the semantic conventions know by
// default (see Config.KnownMethods).
var defaultMethods = map[string]attribute.KeyValue{
	http.MethodConnect:   semconv.HTTPRequestMethodConnect,
	http.MethodDelete:    semconv.HTTPRequestMethodDelete,
	http.MethodGet:       semconv.HTTPRequestMethodGet,
	http.MethodHead:      semconv.HTTPRequestMethodHead,
	http.MethodOptions:   semconv.HTTPRequestMethodOptions,
	http.MethodPatch:     semconv.HTTPRequestMethodPatch,
	http.MethodPost:      semconv.HTTPRequestMethodPost,
	http.MethodPut:       semconv.HTTPRequestMethodPut,
	classify.MethodQuery: semconv.HTTPRequestMethodQuery,
	http.MethodTrace:     semconv.HTTPRequestMethodTrace,
}

// methodAttrs is http.request.method, "_OTHER" with
// http.request.method_original for a method not in Config.KnownMethods.
func (in *Instrumentation) methodAttrs(method string) []attribute.KeyValue {
	if method == "" {
		method = http.MethodGet
	}
	if kv, ok := in.known[method]; ok {
		return []attribute.KeyValue{kv}
	}
	return []attribute.KeyValue{semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method)}
}

// hostAttrs is server.address and server.port of a URL host ("h:port" or
// "h"); the port defaults to the scheme's, when there is one.
func hostAttrs(host string, scheme ...string) []attribute.KeyValue {
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, ""
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			name = host[1 : len(host)-1]
		}
	}
	attrs := []attribute.KeyValue{semconv.ServerAddress(name)}
	if port == "" && len(scheme) > 0 {
		switch scheme[0] {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	return attrs
}

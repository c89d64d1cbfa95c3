package reboundotel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/budget"
	reboundotel "github.com/rebound-http/rebound/otel"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness is the SDK with in-memory span and metric readers.
type harness struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	cfg    reboundotel.Config
}

func newHarness() *harness {
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	h.cfg = reboundotel.Config{
		TracerProvider: h.tp,
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)),
		Propagator:     propagation.TraceContext{},
	}
	return h
}

// metric returns the named metric of the last collection.
func (h *harness) metric(t *testing.T, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// sums returns a counter's points by the value of key.
func sums(t *testing.T, data metricdata.Aggregation, key attribute.Key) map[string]int64 {
	t.Helper()
	sum, ok := data.(metricdata.Sum[int64])
	require.True(t, ok, "%T is not an int64 sum", data)
	out := make(map[string]int64)
	for _, p := range sum.DataPoints {
		v, _ := p.Attributes.Value(key)
		out[v.Emit()] += p.Value
	}
	return out
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string)
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// flakyServer answers its first request with 503 and Retry-After: 1, and
// every later one with 200; it records each request's traceparent.
type flakyServer struct {
	*httptest.Server
	n       atomic.Int32
	mu      sync.Mutex
	parents []string
}

func newFlakyServer(t *testing.T) *flakyServer {
	s := &flakyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.parents = append(s.parents, r.Header.Get("Traceparent"))
		s.mu.Unlock()
		if s.n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, rt http.RoundTripper, ctx context.Context, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestAttemptSpansAndWaitEvent(t *testing.T) {
	h := newHarness()
	srv := newFlakyServer(t)
	rt, err := reboundotel.New(nil, h.cfg, rebound.WithRetry(transport.Config{NoWait: true}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	ctx, call := h.tp.Tracer("test").Start(context.Background(), "call")
	resp, err := get(t, rt, ctx, srv.URL+"/things?secret=1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	call.End()

	ended := h.spans.Ended()
	require.Len(t, ended, 3, "two attempts and the call")
	attempts, parent := ended[:2], ended[2]
	require.Equal(t, "call", parent.Name())
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for i, s := range attempts {
		assert.Equal(t, "GET", s.Name())
		assert.Equal(t, trace.SpanKindClient, s.SpanKind())
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "attempt %d is the call's child: attempts are siblings", i+1)
		assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
		// The attempt's own span goes out in its traceparent.
		assert.Contains(t, srv.parents[i], s.SpanContext().SpanID().String())
		a := attrs(s.Attributes())
		assert.Equal(t, "GET", a["http.request.method"])
		assert.Equal(t, "127.0.0.1", a["server.address"])
		assert.Equal(t, port, a["server.port"])
		assert.Equal(t, srv.URL+"/things", a["url.full"], "no query string")
	}
	first, second := attrs(attempts[0].Attributes()), attrs(attempts[1].Attributes())
	assert.Equal(t, "503", first["http.response.status_code"])
	assert.Equal(t, "503", first["error.type"])
	assert.NotContains(t, first, "http.request.resend_count")
	assert.Equal(t, codes.Error, attempts[0].Status().Code)
	assert.Equal(t, "200", second["http.response.status_code"])
	assert.NotContains(t, second, "error.type")
	assert.Equal(t, "1", second["http.request.resend_count"])
	assert.Equal(t, codes.Unset, attempts[1].Status().Code)

	events := parent.Events()
	require.Len(t, events, 1)
	assert.Equal(t, "rebound.wait", events[0].Name)
	ev := attrs(events[0].Attributes)
	assert.Equal(t, "retry", ev["rebound.wait.kind"])
	assert.Equal(t, "true", ev["rebound.wait.server_hint"], "the server sent Retry-After")
	assert.Equal(t, "status 503", ev["rebound.reason"])
	assert.Equal(t, "1", ev["rebound.attempt"])
	assert.Contains(t, ev, "rebound.wait.duration")

	hist, ok := h.metric(t, "http.client.request.duration").(metricdata.Histogram[float64])
	require.True(t, ok)
	byStatus := map[string]uint64{}
	for _, p := range hist.DataPoints {
		v, _ := p.Attributes.Value("http.response.status_code")
		byStatus[v.Emit()] += p.Count
		m, _ := p.Attributes.Value("http.request.method")
		assert.Equal(t, "GET", m.Emit())
		_, hasURL := p.Attributes.Value("url.full")
		assert.False(t, hasURL, "url.full is not a metric attribute")
	}
	assert.Equal(t, map[string]uint64{"503": 1, "200": 1}, byStatus)
	assert.Equal(t, map[string]int64{"status 503": 1}, sums(t, h.metric(t, "rebound.client.retries"), reboundotel.ReasonKey))
}

func TestRefusalAndGiveUpEvents(t *testing.T) {
	h := newHarness()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	// A budget that allows no retry: the retry is refused.
	rt, err := reboundotel.New(nil, h.cfg, rebound.WithPolicy(rebound.Policy{
		Retry:  transport.Config{NoWait: true},
		Budget: budget.Config{Ratio: budget.RatioConfig{Ratio: -1, MinPerSecond: -1}},
	}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	ctx, call := h.tp.Tracer("test").Start(context.Background(), "call")
	resp, err := get(t, rt, ctx, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	call.End()

	ended := h.spans.Ended()
	require.Len(t, ended, 2, "one attempt sent, and the call")
	var names []string
	for _, e := range ended[1].Events() {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"rebound.wait", "rebound.refusal", "rebound.give_up"}, names)
	refusal := attrs(ended[1].Events()[1].Attributes)
	assert.Equal(t, rebound.GateBudget, refusal["rebound.gate"])
	assert.Contains(t, refusal["error.message"], "budget")
	giveUp := attrs(ended[1].Events()[2].Attributes)
	assert.Equal(t, transport.StopRefused, giveUp["rebound.stop"])
	assert.Equal(t, "not sent", giveUp["rebound.reason"], "the refused retry was not sent")

	assert.Equal(t, map[string]int64{rebound.GateBudget: 1}, sums(t, h.metric(t, "rebound.client.refusals"), reboundotel.GateKey))
	assert.Equal(t, map[string]int64{transport.StopRefused: 1}, sums(t, h.metric(t, "rebound.client.give_ups"), reboundotel.StopKey))
}

func TestTransportErrorType(t *testing.T) {
	h := newHarness()
	// A port nobody listens on: the connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	rt, err := reboundotel.New(nil, h.cfg, rebound.WithRetry(transport.Config{MaxAttempts: 1}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	_, err = get(t, rt, context.Background(), "http://"+addr+"/")
	require.Error(t, err)
	ended := h.spans.Ended()
	require.Len(t, ended, 1)
	a := attrs(ended[0].Attributes())
	assert.Equal(t, "connection refused", a["error.type"])
	assert.NotContains(t, a, "http.response.status_code")
	assert.Equal(t, codes.Error, ended[0].Status().Code)
}

func TestBreakerStateAndTrips(t *testing.T) {
	h := newHarness()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	rt, err := reboundotel.New(nil, h.cfg, rebound.WithRetry(transport.Config{MaxAttempts: 1}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	gauge := func() map[string]int64 {
		g, ok := h.metric(t, "rebound.client.breaker.state").(metricdata.Gauge[int64])
		require.True(t, ok)
		out := map[string]int64{}
		for _, p := range g.DataPoints {
			addr, _ := p.Attributes.Value("server.address")
			port, _ := p.Attributes.Value("server.port")
			out[addr.Emit()+":"+port.Emit()] = p.Value
		}
		return out
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	get(t, rt, context.Background(), srv.URL)
	assert.Equal(t, map[string]int64{host: 0}, gauge(), "closed")

	// A dead host trips its breaker within 10 failures.
	for range 20 {
		get(t, rt, context.Background(), srv.URL)
	}
	assert.Equal(t, map[string]int64{host: 1}, gauge(), "open")
	trips, ok := h.metric(t, "rebound.client.breaker.trips").(metricdata.Sum[int64])
	require.True(t, ok)
	require.Len(t, trips.DataPoints, 1)
	assert.Equal(t, int64(1), trips.DataPoints[0].Value)
	refusals := sums(t, h.metric(t, "rebound.client.refusals"), reboundotel.GateKey)
	assert.Positive(t, refusals[rebound.GateBreaker])
	assert.Equal(t, strconv.Itoa(21-int(refusals[rebound.GateBreaker])), strconv.Itoa(len(h.spans.Ended())), "a refused attempt has no span")
}

// TestAttemptSpanEndsWithBody: a response whose body comes slowly keeps
// its attempt's span open until the body is read to its end, and the span
// says how long the body took.
func TestAttemptSpanEndsWithBody(t *testing.T) {
	h := newHarness()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part, ")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second part")
	}))
	defer srv.Close()
	rt, err := reboundotel.New(nil, h.cfg)
	require.NoError(t, err)
	defer rt.CloseIdleConnections()

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	headers := time.Now()
	assert.Empty(t, h.spans.Ended(), "the span waits for the body")
	close(release)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	read := time.Now()
	assert.Equal(t, "first part, second part", string(body))
	spans := h.spans.Ended()
	require.Len(t, spans, 1, "the span ended with the body's end")
	s := spans[0]
	assert.False(t, s.EndTime().Before(headers), "ended after the headers came")
	assert.False(t, s.EndTime().After(read), "ended when the body was read")
	d, ok := attrs(s.Attributes())[string(reboundotel.BodyDurationKey)]
	require.True(t, ok, "rebound.body.duration is set")
	secs, err := strconv.ParseFloat(d, 64)
	require.NoError(t, err)
	assert.Greater(t, secs, 0.0)
	assert.LessOrEqual(t, secs, read.Sub(headers).Seconds()+s.EndTime().Sub(s.StartTime()).Seconds())
	resp.Body.Close()
	assert.Len(t, h.spans.Ended(), 1, "a close after the end ends nothing more")
}

// TestAttemptSpanEndsOnClose: a body closed unread ends the span too, and
// a response without a body ends it at once.
func TestAttemptSpanEndsOnClose(t *testing.T) {
	h := newHarness()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 1<<16))
	}))
	defer srv.Close()
	in, err := reboundotel.NewInstrumentation(h.cfg)
	require.NoError(t, err)
	base := in.Base(nil)
	defer base.(interface{ CloseIdleConnections() }).CloseIdleConnections()

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := base.RoundTrip(req)
	require.NoError(t, err)
	assert.Empty(t, h.spans.Ended())
	resp.Body.Close()
	assert.Len(t, h.spans.Ended(), 1)

	req, err = http.NewRequest(http.MethodHead, srv.URL, nil)
	require.NoError(t, err)
	resp, err = base.RoundTrip(req)
	require.NoError(t, err)
	assert.Len(t, h.spans.Ended(), 2, "a HEAD's span ends with its headers")
	resp.Body.Close()
}

// TestMetricHostsBounded: metrics name the first rebound.MaxStatsHosts
// hosts and report the rest as "(other)"; a host with invalid bytes
// reaches attributes as valid UTF-8.
func TestMetricHostsBounded(t *testing.T) {
	h := newHarness()
	in, err := reboundotel.NewInstrumentation(h.cfg)
	require.NoError(t, err)
	base := in.Base(okStub{})
	for i := range rebound.MaxStatsHosts + 10 {
		req, err := http.NewRequest(http.MethodGet, "http://h"+strconv.Itoa(i)+".test/", nil)
		require.NoError(t, err)
		resp, err := base.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	var resp *http.Response
	hist, ok := h.metric(t, "http.client.request.duration").(metricdata.Histogram[float64])
	require.True(t, ok)
	hosts := map[string]uint64{}
	for _, p := range hist.DataPoints {
		v, _ := p.Attributes.Value("server.address")
		hosts[v.AsString()] += p.Count
	}
	assert.Len(t, hosts, rebound.MaxStatsHosts+1)
	assert.EqualValues(t, 10, hosts[rebound.OtherHost])

	req, err := http.NewRequest(http.MethodGet, "http://[::1%25\xff]:1/", nil)
	require.NoError(t, err, "url.Parse accepts raw bytes in a zone")
	resp, err = base.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	spans := h.spans.Ended()
	last := spans[len(spans)-1]
	for _, kv := range last.Attributes() {
		assert.True(t, utf8.ValidString(kv.Value.Emit()), "%s = %q", kv.Key, kv.Value.Emit())
	}
	assert.Equal(t, `::1%\xff`, attrs(last.Attributes())["server.address"])
}

// okStub answers every request with 200 and a short body.
type okStub struct{}

func (okStub) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok")), Header: http.Header{}}, nil
}

// The hedges counter counts a hedge only when it was sent: against a real
// server's own count, with a retry budget that refuses most hedges.
func TestHedgesCounterMatchesServer(t *testing.T) {
	var hedges atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Attempt") != "1" {
			hedges.Add(1)
			return
		}
		select { // the first attempt is slow: it is hedged
		case <-r.Context().Done():
		case <-time.After(80 * time.Millisecond):
		}
	}))
	defer srv.Close()
	h := newHarness()
	rt, err := reboundotel.New(nil, h.cfg, rebound.WithPolicy(rebound.Policy{
		DisableBreaker: true,
		Budget:         budget.Config{Ratio: budget.RatioConfig{Ratio: 0.1, MinPerSecond: -1}},
		Retry:          transport.Config{AttemptHeader: "X-Attempt", Hedge: &transport.HedgeConfig{Delay: 20 * time.Millisecond}},
	}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()
	for range 20 {
		_, err := get(t, rt, context.Background(), srv.URL)
		require.NoError(t, err)
	}
	var counted int64
	assert.Eventually(t, func() bool {
		counted = 0
		for _, v := range sums(t, h.metric(t, "rebound.client.hedges"), "server.address") {
			counted += v
		}
		return counted == hedges.Load()
	}, 5*time.Second, 10*time.Millisecond)
	t.Logf("the server saw %d hedges, the counter says %d", hedges.Load(), counted)
	assert.Positive(t, counted)
	assert.Less(t, counted, int64(20), "the budget refused some hedges, and they are not counted")
}

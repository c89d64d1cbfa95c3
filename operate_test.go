package rebound_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// operatorLog collects a Transport's operator events.
type operatorLog struct {
	mu  sync.Mutex
	evs []rebound.OperatorEvent
}

func (o *operatorLog) add(ev rebound.OperatorEvent) {
	o.mu.Lock()
	o.evs = append(o.evs, ev)
	o.mu.Unlock()
}

func (o *operatorLog) take() []rebound.OperatorEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	evs := o.evs
	o.evs = nil
	return evs
}

// countingServer answers 200 and counts the requests it received.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// operateTransport is a Transport over its own pooled base, reporting
// operator events to ops and logging to logBuf.
func operateTransport(t *testing.T, ops *operatorLog, logBuf *syncBuffer, opts ...rebound.Option) *rebound.Transport {
	t.Helper()
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	obs := rebound.Observer{Operator: ops.add}
	opts = append(opts, rebound.WithObserver(obs))
	if logBuf != nil {
		opts = append(opts, rebound.WithObserver(rebound.LogObserver(slog.New(slog.NewTextHandler(logBuf, nil)))))
	}
	rt, err := rebound.New(base, opts...)
	require.NoError(t, err)
	return rt
}

func get(t *testing.T, c *http.Client, url string) error {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func TestIsolateRefusesUnsentAndReports(t *testing.T) {
	srv, hits := countingServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	ops, logs := &operatorLog{}, &syncBuffer{}
	rt := operateTransport(t, ops, logs)
	client := &http.Client{Transport: rt}

	require.NoError(t, get(t, client, srv.URL))
	require.NoError(t, rt.Isolate(strings.ToUpper("LOCALHOST")+host[len("127.0.0.1"):], time.Hour), "another host's spelling")
	require.NoError(t, rt.Isolate(host, time.Hour))
	evs := ops.take()
	require.Len(t, evs, 2)
	assert.Equal(t, rebound.ActionIsolate, evs[1].Action)
	assert.Equal(t, host, evs[1].Host)
	assert.WithinDuration(t, time.Now().Add(time.Hour), evs[1].Until, time.Minute)

	for range 3 {
		err := get(t, client, srv.URL+"/path?token=secret")
		require.Error(t, err)
		assert.ErrorIs(t, err, rebound.ErrIsolated)
		assert.ErrorIs(t, err, classify.ErrNotSent)
		assert.ErrorIs(t, err, transport.ErrRefused)
		var ie *rebound.IsolatedError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, host, ie.Host)
		assert.Greater(t, ie.RetryIn, 59*time.Minute)
	}
	assert.EqualValues(t, 1, hits.Load(), "an isolated host is sent nothing")
	st := rt.Stats()
	require.Len(t, st.Hosts, 1)
	assert.Equal(t, map[string]uint64{rebound.GateIsolated: 3}, st.Hosts[0].Refusals)
	assert.EqualValues(t, 4, st.Hosts[0].Calls)
	assert.EqualValues(t, 1, st.Hosts[0].Attempts)

	// A POST's body is closed, as every gate's refusal closes it.
	body := &closeBody{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	_, err := client.Do(req)
	require.ErrorIs(t, err, rebound.ErrIsolated)
	assert.True(t, body.closed.Load())

	require.NoError(t, rt.Isolate(host, 0))
	require.NoError(t, rt.Isolate(host, 0), "lifting what is not isolated is a no-op")
	evs = ops.take()
	require.Len(t, evs, 1)
	assert.Equal(t, rebound.ActionLift, evs[0].Action)
	require.NoError(t, get(t, client, srv.URL))
	assert.EqualValues(t, 2, hits.Load())

	// An isolation ends at its time: the first call after it goes and
	// reports the end.
	require.NoError(t, rt.Isolate(host, time.Nanosecond))
	for end := time.Now().Add(time.Nanosecond); !time.Now().After(end); {
	} // outlive the nanosecond
	require.NoError(t, get(t, client, srv.URL))
	evs = ops.take()
	require.Len(t, evs, 2)
	assert.Equal(t, rebound.ActionExpire, evs[1].Action)

	out := logs.String()
	assert.Contains(t, out, `level=WARN msg="rebound: host isolated" host=`+host)
	assert.Contains(t, out, `msg="rebound: refused" host=`+host)
	assert.Contains(t, out, "gate=isolated")
	assert.Contains(t, out, `msg="rebound: isolation lifted"`)
	assert.Contains(t, out, `msg="rebound: isolation ended"`)
	assert.NotContains(t, out, "secret")
}

type closeBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *closeBody) Close() error { b.closed.Store(true); return nil }

func TestIsolateRejectsBadInput(t *testing.T) {
	rt := rebound.NewTransport(nil)
	defer rt.CloseIdleConnections()
	for _, h := range []string{"*.example.com", "http://example.com/", "", "a b"} {
		err := rt.Isolate(h, time.Minute)
		require.Error(t, err, h)
		assert.Contains(t, err.Error(), "Isolate(")
		_, err = rt.Reset(h)
		require.Error(t, err, h)
		assert.Contains(t, err.Error(), "Reset(")
	}
	err := rt.Isolate("example.com", 25*time.Hour)
	require.ErrorContains(t, err, `Isolate("example.com"): 25h0m0s is longer than the longest isolation (24h0m0s)`)
	for i := range 1024 {
		require.NoError(t, rt.Isolate("h"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".example", time.Minute))
	}
	require.ErrorContains(t, rt.Isolate("one-more.example", time.Minute), "1024 hosts are isolated already")
	require.NoError(t, rt.Isolate("ha.example", 2*time.Minute), "renewing an isolated host is allowed at the bound")
	require.NoError(t, rt.Isolate("ha.example", 0))
	require.NoError(t, rt.Isolate("one-more.example", time.Minute), "lifting one makes room")
}

// tripped returns a Transport whose breaker for a closed port is open.
func tripped(t *testing.T, ops *operatorLog, opts ...rebound.Option) (rt *rebound.Transport, url, host string) {
	t.Helper()
	url = matrixClosedPort(t)
	host = strings.TrimPrefix(url, "http://")
	opts = append([]rebound.Option{rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 1}, DisableBudget: true})}, opts...)
	rt = operateTransport(t, ops, nil, opts...)
	client := &http.Client{Transport: rt}
	for i := 0; ; i++ {
		require.Less(t, i, 200, "the breaker never opened")
		if err := get(t, client, url); errors.Is(err, breaker.ErrOpen) {
			return rt, url, host
		}
	}
}

func TestResetClosesTheCircuitAndClearsAdmission(t *testing.T) {
	ops := &operatorLog{}
	rt, _, host := tripped(t, ops)
	require.Error(t, rt.Ready(host))
	reset, err := rt.Reset(host)
	require.NoError(t, err)
	assert.Equal(t, []string{"breaker"}, reset)
	require.NoError(t, rt.Ready(host))
	for _, b := range rt.Breakers() {
		assert.Equal(t, breaker.Closed, b.State)
		assert.Equal(t, 1, b.Trips, "Trips keeps counting")
	}
	evs := ops.take()
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	assert.Equal(t, rebound.OperatorEvent{Action: rebound.ActionReset, Host: host, Reset: []string{"breaker"},
		Detail: "state forgotten by the operator"}, last)

	reset, err = rt.Reset("never-seen.example")
	require.NoError(t, err)
	assert.Empty(t, reset)

	// A host paused by the server's 30 s wait hint: after Reset the next
	// call goes at once.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	rt2 := operateTransport(t, ops, nil, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 1}}))
	client := &http.Client{Transport: rt2}
	for range 2 {
		require.Error(t, get(t, client, srv.URL))
	}
	host2 := strings.TrimPrefix(srv.URL, "http://")
	snap := rt2.Snapshot()
	require.Len(t, snap, 1)
	require.NotNil(t, snap[0].Admission, "the host is paused")
	reset, err = rt2.Reset(host2)
	require.NoError(t, err)
	assert.Contains(t, reset, "admission")
	start := time.Now()
	require.NoError(t, get(t, client, srv.URL))
	assert.Less(t, time.Since(start), 10*time.Second, "not held for the 30 s hint")
	assert.Nil(t, rt2.Snapshot()[0].Admission)
}

func TestResetAndIsolateUnderLoad(t *testing.T) {
	srv, hits := countingServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	ops := &operatorLog{}
	rt := operateTransport(t, ops, nil)
	client := &http.Client{Transport: rt}
	var wg sync.WaitGroup
	var ok, isolated, other atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 200 {
				switch err := get(t, client, srv.URL); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, rebound.ErrIsolated):
					isolated.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			switch i % 3 {
			case 0:
				assert.NoError(t, rt.Isolate(host, time.Hour))
			case 1:
				_, err := rt.Reset(host)
				assert.NoError(t, err)
			default:
				_ = rt.Snapshot()
				_ = rt.Ready(host)
			}
		}
		_, err := rt.Reset(host)
		assert.NoError(t, err)
	})
	wg.Wait()
	assert.Zero(t, other.Load())
	assert.EqualValues(t, 1600, ok.Load()+isolated.Load())
	assert.Equal(t, ok.Load(), hits.Load(), "every call not isolated was sent once")
	st := rt.Stats()
	assert.EqualValues(t, 1600, st.Total.Calls)
	assert.Equal(t, uint64(isolated.Load()), st.Total.Refusals[rebound.GateIsolated])
	require.NoError(t, get(t, client, srv.URL), "the last Reset lifted the isolation")
}

func TestReadyNamesTheHostsThatAreNot(t *testing.T) {
	ops := &operatorLog{}
	rt, _, host := tripped(t, ops)
	assert.NoError(t, rt.Ready(), "no chosen host: ready")
	assert.NoError(t, rt.Ready("other.example"))
	err := rt.Ready("other.example", host)
	require.Error(t, err)
	assert.Regexp(t, `^rebound: not ready: 127\.0\.0\.1:\d+ circuit (open|half-open): .+`, err.Error())
	require.NoError(t, rt.Isolate("other.example", time.Minute))
	err = rt.Ready("OTHER.example.", host)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "other.example isolated by an operator for another 1m0s; 127.0.0.1:")
}

func TestAdminHandlerServesTheSnapshot(t *testing.T) {
	ops := &operatorLog{}
	rt, url, host := tripped(t, ops)
	client := &http.Client{Transport: rt}
	_ = get(t, client, strings.Replace(url, "http://", "http://user:hunter2@", 1)+"/a?token=secret")
	require.NoError(t, rt.Isolate("isolated.example", time.Hour))
	admin := httptest.NewServer(rt.AdminHandler())
	defer admin.Close()

	resp, err := http.Get(admin.URL + "/rebound")
	require.NoError(t, err)
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	page := string(text)
	t.Log("\n" + page)
	assert.Contains(t, page, "rebound: 2 hosts at ")
	assert.Regexp(t, `(?m)^`+strings.ReplaceAll(host, ".", `\.`)+` +\(default\) +(open|half-open) +- +\d+ +\d+ +\d+ +- +.*failed`, page)
	assert.Regexp(t, `(?m)^isolated\.example +\(default\) +closed .*ISOLATED for (1h0m0s|59m59s)`, page)

	req, _ := http.NewRequest(http.MethodGet, admin.URL+"/rebound", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var doc struct {
		Hosts []struct {
			Host    string `json:"host"`
			Pattern string `json:"pattern"`
			Breaker struct {
				State  string `json:"state"`
				Reason string `json:"reason"`
				Trips  int    `json:"trips"`
			} `json:"breaker"`
			IsolatedFor string            `json:"isolated_for"`
			Calls       uint64            `json:"calls"`
			Refusals    map[string]uint64 `json:"refusals"`
		} `json:"hosts"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc), string(raw))
	require.Len(t, doc.Hosts, 2)
	assert.Equal(t, host, doc.Hosts[0].Host)
	assert.Contains(t, []string{"open", "half-open"}, doc.Hosts[0].Breaker.State)
	assert.NotEmpty(t, doc.Hosts[0].Breaker.Reason)
	assert.Equal(t, 1, doc.Hosts[0].Breaker.Trips)
	assert.Positive(t, doc.Hosts[0].Calls)
	assert.Positive(t, doc.Hosts[0].Refusals[rebound.GateBreaker])
	assert.Equal(t, "isolated.example", doc.Hosts[1].Host)
	assert.NotEmpty(t, doc.Hosts[1].IsolatedFor)

	for _, body := range []string{page, string(raw)} {
		for _, leak := range []string{"secret", "token", "hunter2", "user", "/a"} {
			assert.NotContains(t, body, leak)
		}
	}

	resp, err = http.Post(admin.URL+"/rebound", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	resp, err = http.Get(admin.URL + "/rebound.json")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
}

// A policy that learns timeouts but does not hedge shows its latency in
// the snapshot (reading it dereferenced the absent hedge configuration).
func TestSnapshotOfLearnedTimeoutWithoutHedge(t *testing.T) {
	srv, _ := countingServer(t)
	rt := operateTransport(t, &operatorLog{}, nil, rebound.WithPolicy(rebound.Policy{
		Retry: transport.Config{LearnedTimeout: &transport.LearnedTimeoutConfig{}}}))
	client := &http.Client{Transport: rt}
	for range 5 {
		require.NoError(t, get(t, client, srv.URL))
	}
	snap := rt.Snapshot()
	require.Len(t, snap, 1)
	require.NotNil(t, snap[0].Latency)
	assert.EqualValues(t, 5, snap[0].Latency.Samples)
	assert.Zero(t, snap[0].Latency.Hedge)
	assert.Positive(t, snap[0].Latency.P50)
}

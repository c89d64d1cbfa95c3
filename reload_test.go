package rebound_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reloads returns the reload events of evs by pattern.
func reloads(evs []rebound.OperatorEvent) map[string]rebound.OperatorEvent {
	m := map[string]rebound.OperatorEvent{}
	for _, ev := range evs {
		if ev.Action == rebound.ActionReload {
			m[ev.Pattern] = ev
		}
	}
	return m
}

func TestReloadKeepsTheStateOfWhatDidNotChange(t *testing.T) {
	ops := &operatorLog{}
	pol := rebound.Policy{Retry: transport.Config{MaxAttempts: 1}, DisableBudget: true}
	rt, url, host := tripped(t, ops)
	ops.take()
	open := func() bool {
		r, ok := stateOf(rt, host)
		return ok && r != breaker.Closed
	}
	require.True(t, open())

	// The same policy again: the whole chain is kept.
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol)))
	assert.True(t, open(), "an unchanged policy keeps its breaker")
	ev := reloads(ops.take())[""]
	assert.Equal(t, "policy unchanged: state kept", ev.Detail)
	assert.Empty(t, ev.Reset)

	// Another retry setting, the same breaker: the breaker is kept.
	pol.Retry.MaxAttempts = 2
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol)))
	assert.True(t, open(), "a policy whose Breaker did not change keeps its breakers")
	ev = reloads(ops.take())[""]
	assert.Equal(t, "policy changed: state kept", ev.Detail)
	assert.Empty(t, ev.Reset)
	_, p := rt.PolicyFor(host)
	assert.Equal(t, 2, p.Retry.MaxAttempts)

	// Another breaker configuration: the breakers start afresh, and the
	// event names them and their hosts.
	pol.Breaker.OpenTimeout = 3 * time.Second
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol)))
	assert.False(t, open())
	ev = reloads(ops.take())[""]
	assert.Equal(t, []string{"breaker"}, ev.Reset)
	assert.Equal(t, []string{host}, ev.Hosts)

	// An invalid configuration changes nothing and says why.
	err := rt.Reload(rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Jitter: 99}}),
		rebound.WithHostPolicy("http://bad/", pol))
	require.Error(t, err)
	var ce *rebound.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), "Retry.Jitter")
	assert.Contains(t, err.Error(), "http://bad/")
	_, p = rt.PolicyFor(host)
	assert.Equal(t, 2, p.Retry.MaxAttempts, "the old configuration stays in force")
	evs := ops.take()
	require.Len(t, evs, 1)
	assert.Equal(t, err, evs[0].Err)

	// A host policy added, then removed.
	client := &http.Client{Transport: rt}
	hp := pol
	hp.Retry.MaxAttempts = 1
	_ = get(t, client, url) // the default policy's new breaker tracks the host
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol), rebound.WithHostPolicy(host, hp)))
	ev = reloads(ops.take())[host]
	assert.Equal(t, "policy added; hosts that were under another policy start fresh", ev.Detail,
		"the host's breaker was the default policy's: the event says it starts fresh")
	assert.Equal(t, []string{host}, ev.Hosts)
	pattern, _ := rt.PolicyFor(host)
	assert.Equal(t, host, pattern)
	for i := 0; !open(); i++ {
		require.Less(t, i, 200, "the host policy's breaker never opened")
		_ = get(t, client, url)
	}
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol)))
	evs = ops.take()
	ev = reloads(evs)[host]
	assert.Equal(t, "policy removed: its hosts' state forgotten", ev.Detail)
	assert.Equal(t, []string{host}, ev.Hosts)
	ev = reloads(evs)[""]
	assert.Equal(t, "policy unchanged: state kept; hosts that were under another policy start fresh", ev.Detail)
	assert.Equal(t, []string{host}, ev.Hosts)
}

// stateOf returns the state of host's breaker.
func stateOf(rt *rebound.Transport, host string) (breaker.State, bool) {
	for _, s := range rt.Snapshot() {
		if s.Host == host {
			return s.Breaker.State, s.Breaker.Generation > 0
		}
	}
	return breaker.Closed, false
}

func TestReloadComparesFuncsByIdentity(t *testing.T) {
	ops := &operatorLog{}
	onChange := func(breaker.StateChange) {}
	pol := func(f func(breaker.StateChange)) rebound.Option {
		return rebound.WithPolicy(rebound.Policy{Breaker: breaker.Config{OnStateChange: f},
			Retry: transport.Config{Observer: transport.ObserverFunc(func(transport.Event) {})}})
	}
	rt := operateTransport(t, ops, nil, pol(onChange))
	obs := rebound.Policy{Breaker: breaker.Config{OnStateChange: onChange}}
	obs.Retry.Observer = transport.ObserverFunc(func(transport.Event) {})
	// One Policy value given twice: every part is kept.
	require.NoError(t, rt.Reload(rebound.WithPolicy(obs)))
	ops.take()
	require.NoError(t, rt.Reload(rebound.WithPolicy(obs)))
	assert.Equal(t, "policy unchanged: state kept", reloads(ops.take())[""].Detail)
	// Another closure of the same literal is another hook.
	require.NoError(t, rt.Reload(pol(func(breaker.StateChange) {})))
	assert.Equal(t, []string{"breaker"}, reloads(ops.take())[""].Reset)
}

func TestReloadFile(t *testing.T) {
	ops, logs := &operatorLog{}, &syncBuffer{}
	rt := operateTransport(t, ops, logs)
	dir := t.TempDir()
	path := filepath.Join(dir, "policies.json")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }

	write(`{"default": {"max_attempts": 2}, "hosts": {"api.example.com": {"max_attempts": 5}}}`)
	require.NoError(t, rt.ReloadFile(path))
	pattern, p := rt.PolicyFor("API.example.com")
	assert.Equal(t, "api.example.com", pattern)
	assert.Equal(t, 5, p.Retry.MaxAttempts)
	_, p = rt.PolicyFor("other.example")
	assert.Equal(t, 2, p.Retry.MaxAttempts)

	write(`{"default": {"max_atempts": 3}}`)
	err := rt.ReloadFile(path)
	require.Error(t, err)
	var ce *rebound.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), "max_atempts")
	_, p = rt.PolicyFor("api.example.com")
	assert.Equal(t, 5, p.Retry.MaxAttempts, "the old configuration stays in force")

	require.Error(t, rt.ReloadFile(filepath.Join(dir, "missing.json")))

	out := logs.String()
	assert.Contains(t, out, `msg="rebound: policy reloaded" policy=api.example.com detail="policy added"`)
	assert.Contains(t, out, `level=WARN msg="rebound: reload failed"`)
	assert.Contains(t, out, "max_atempts")
	// The reload without WithObserver kept the observers: the failures
	// above were logged and reported.
	evs := ops.take()
	require.NotEmpty(t, evs)
	assert.Error(t, evs[len(evs)-1].Err)
}

// TestReloadUnderLoad makes 10,000 calls from 32 goroutines while the
// configuration is reloaded 100 times between two sets of policies (the
// default's retry settings change, a host policy comes and goes): every
// call succeeds, every one is counted, and the race detector is quiet.
func TestReloadUnderLoad(t *testing.T) {
	const calls, workers, nReloads = 10_000, 32, 100
	srv, hits := countingServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	ops := &operatorLog{}
	rt := operateTransport(t, ops, nil)
	client := &http.Client{Transport: rt}
	configs := [][]rebound.Option{
		{rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 3}})},
		{rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 4}}),
			rebound.WithHostPolicy(host, rebound.Policy{Retry: transport.Config{MaxAttempts: 2}})},
	}
	var next, failed, done atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= calls {
				if err := get(t, client, fmt.Sprintf("%s/%d", srv.URL, next.Load())); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				done.Add(1)
			}
		})
	}
	reloaded := 0
	for i := range nReloads {
		for done.Load() < int64(i*calls/nReloads) { // spread the reloads over the calls
			runtime.Gosched()
		}
		require.NoError(t, rt.Reload(configs[i%2]...))
		reloaded++
	}
	wg.Wait()
	assert.Equal(t, nReloads, reloaded)
	assert.Zero(t, failed.Load(), "first error: %v", firstErr.Load())
	assert.EqualValues(t, calls, hits.Load())
	st := rt.Stats()
	assert.EqualValues(t, calls, st.Total.Calls, "no call lost from the counters")
	assert.EqualValues(t, calls, st.Total.Attempts)
	var reloadEvents int
	for _, ev := range ops.take() {
		if ev.Action == rebound.ActionReload {
			reloadEvents++
			require.NoError(t, ev.Err)
		}
	}
	assert.GreaterOrEqual(t, reloadEvents, nReloads)
}

func TestReloadOfAFailingTransport(t *testing.T) {
	rt := rebound.NewTransport(nil, rebound.WithHostPolicy("http://bad/", rebound.Policy{}))
	defer rt.CloseIdleConnections()
	_, err := rt.RoundTrip(mustRequest(t, "http://example.invalid/"))
	require.Error(t, err)
	var ce *rebound.ConfigError
	require.True(t, errors.As(err, &ce))
	srv, _ := countingServer(t)
	require.NoError(t, rt.Reload())
	require.NoError(t, get(t, &http.Client{Transport: rt}, srv.URL), "a valid reload repairs it")
	host := strings.TrimPrefix(srv.URL, "http://")
	var calls uint64
	for _, h := range rt.Stats().Hosts {
		if h.Host == host {
			calls = h.Calls
		}
	}
	assert.EqualValues(t, 1, calls, "the repaired Transport counts its calls in Stats")
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

// A reload that gives new observers keeps every state, and the retry
// loops report to the new observers from then on.
func TestReloadWithNewObservers(t *testing.T) {
	ops := &operatorLog{}
	rt, url, host := tripped(t, ops)
	ops.take()
	var mu sync.Mutex
	var events []transport.Event
	obs := rebound.Observer{Retry: func(e transport.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}, Operator: ops.add}
	pol := rebound.Policy{Retry: transport.Config{MaxAttempts: 1}, DisableBudget: true}
	require.NoError(t, rt.Reload(rebound.WithPolicy(pol), rebound.WithObserver(obs)))
	ev := reloads(ops.take())[""]
	assert.Equal(t, "policy unchanged: state kept", ev.Detail)
	state, _ := stateOf(rt, host)
	assert.NotEqual(t, breaker.Closed, state, "the breaker is kept")
	err := get(t, &http.Client{Transport: rt}, url)
	require.ErrorIs(t, err, breaker.ErrOpen)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, events, "the new Retry observer hears the refused call")
	assert.Equal(t, transport.EventGiveUp, events[len(events)-1].Kind)
}

// An isolation survives a reload, and so do the counters.
func TestReloadKeepsIsolationsAndCounters(t *testing.T) {
	srv, hits := countingServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	rt := operateTransport(t, &operatorLog{}, nil)
	client := &http.Client{Transport: rt}
	require.NoError(t, get(t, client, srv.URL))
	require.NoError(t, rt.Isolate(host, time.Hour))
	require.NoError(t, rt.Reload(rebound.WithHostPolicy(host, rebound.Policy{Retry: transport.Config{MaxAttempts: 2}})))
	require.ErrorIs(t, get(t, client, srv.URL), rebound.ErrIsolated)
	assert.EqualValues(t, 1, hits.Load())
	st := rt.Stats()
	require.Len(t, st.Hosts, 1)
	assert.EqualValues(t, 2, st.Hosts[0].Calls)
	assert.EqualValues(t, 1, st.Hosts[0].Refusals[rebound.GateIsolated])
	snap := rt.Snapshot()
	require.Len(t, snap, 1)
	assert.Equal(t, host, snap[0].Pattern, "read from the policy serving the host now")
	assert.Positive(t, snap[0].IsolatedFor)
}

package rebound_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogObserverAggregatesRefusalsOfAnOpenCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var refused atomic.Int64
		count := rebound.Observer{Retry: func(e transport.Event) {
			if e.Kind == transport.EventGiveUp && (e.Stop == transport.StopRefused || e.Stop == transport.StopHeld) {
				refused.Add(1)
			}
		}}
		base := &countingBase{status: http.StatusBadGateway, hits: map[string]int{}}
		rt := rebound.NewTransport(base,
			rebound.WithRetry(transport.Config{MaxAttempts: 1}),
			rebound.WithObserver(rebound.LogObserver(logger)),
		)
		// The observer under test only sees what LogObserver sees: run
		// a second, counting transport over the same base in step.
		counting := rebound.NewTransport(base, rebound.WithRetry(transport.Config{MaxAttempts: 1}), rebound.WithObserver(count))
		const seconds = 10
		calls := 0
		for end := time.Now().Add(seconds * time.Second); time.Now().Before(end); calls++ {
			for _, c := range []http.RoundTripper{rt, counting} {
				req, _ := http.NewRequest(http.MethodGet, "http://down.test/x?secret=1", nil)
				if resp, err := c.RoundTrip(req); err == nil {
					resp.Body.Close()
				}
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(3 * time.Second) // let the last window close
		require.Greater(t, refused.Load(), int64(calls/2), "the circuit was open for most calls")

		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var refusalLines, logged int
		countRe := regexp.MustCompile(` count=(\d+)`)
		for _, line := range lines {
			if !strings.Contains(line, "rebound: refused") {
				continue
			}
			refusalLines++
			if m := countRe.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				logged += n
			} else {
				logged++
			}
		}
		t.Logf("%d calls, %d refused, %d log lines (%d about refusals)", calls, refused.Load(), len(lines), refusalLines)
		assert.LessOrEqual(t, refusalLines, seconds+2, "at most one refusal line per host per second")
		assert.Equal(t, int(refused.Load()), logged, "every refusal is counted in some line")
		assert.NotContains(t, out.String(), "secret", "the query string is never logged")
		assert.Contains(t, out.String(), `msg="rebound: circuit open"`)
	})
}

type ctxKey struct{}

// ctxHandler records the value of ctxKey in each record's context.
type ctxHandler struct {
	slog.Handler
	mu   *sync.Mutex
	seen *[]any
}

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.seen = append(*h.seen, ctx.Value(ctxKey{}))
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func TestLogObserverLevelsAndContext(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	var seen []any
	logger := slog.New(ctxHandler{Handler: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), mu: &mu, seen: &seen})
	rt := newTransport(t, rebound.WithRetry(fastRetry), rebound.WithObserver(rebound.LogObserver(logger)))
	ctx := context.WithValue(context.Background(), ctxKey{}, "req-42")

	status.Store(http.StatusNotFound)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/things?token=x", nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, buf.String(), "level=DEBUG")
	assert.NotContains(t, buf.String(), "level=WARN", "a final 4xx is not a warning")

	buf.Reset()
	status.Store(http.StatusServiceUnavailable)
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/things?token=x", nil)
	resp, err = rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, buf.String(), `level=WARN msg="rebound: give up"`)
	assert.Contains(t, buf.String(), "method=GET path=/things")
	assert.NotContains(t, buf.String(), "token")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, seen)
	for _, v := range seen {
		assert.Equal(t, "req-42", v, "every line carries the request's context")
	}
}

// TestLogObserverRefusedRetry: a retry the budget refuses after the first
// attempt was sent is logged as refused, call by call, not left as a
// "retry" line that reads as if it was made (nor folded into the
// per-second count of refused calls).
func TestLogObserverRefusedRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		base := &countingBase{status: http.StatusBadGateway, hits: map[string]int{}}
		none := budget.Config{Ratio: budget.RatioConfig{Ratio: -1, MinPerSecond: -1}}
		rt := rebound.NewTransport(base,
			rebound.WithPolicy(rebound.Policy{Retry: transport.Config{NoWait: true}, Budget: none}),
			rebound.WithObserver(rebound.LogObserver(logger)))
		const calls = 3
		for range calls {
			req, _ := http.NewRequest(http.MethodGet, "http://flaky.test/x", nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "the caller gets the attempt sent")
			resp.Body.Close()
		}
		require.Equal(t, calls, base.hits["flaky.test/x"], "no retry was sent")
		time.Sleep(3 * time.Second) // any window of refusals closes

		var retries, refused int
		for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
			switch {
			case strings.Contains(line, `msg="rebound: retry"`):
				retries++
			case strings.Contains(line, `msg="rebound: retry refused"`):
				refused++
				assert.Contains(t, line, "level=WARN")
				assert.Contains(t, line, "gate=budget")
				assert.Contains(t, line, "attempts=1")
				assert.Contains(t, line, "status=502")
				assert.Contains(t, line, `error="budget: retry budget exhausted"`)
			default:
				t.Errorf("unexpected line: %s", line)
			}
		}
		assert.Equal(t, calls, retries, "each call scheduled one retry")
		assert.Equal(t, calls, refused, "and each was refused, in a line of its own")
	})
}

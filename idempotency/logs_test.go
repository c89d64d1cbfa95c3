package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// lines returns the records as "LEVEL message" lines.
func (l *logRecorder) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		out = append(out, r.Level.String()+" "+r.Message)
	}
	return out
}

// lockedStore's Reserve waits for the key's lock, which never comes,
// until its context ends, as a database insert waits for a concurrent
// transaction; its error wraps the context's, as pgx's do. entered is
// closed when Reserve starts waiting. With fail set, Reserve fails at once
// instead, as a store that is down.
type lockedStore struct {
	*idempotency.MemoryStore
	entered chan struct{}
	once    sync.Once
	fail    bool
}

func (s *lockedStore) Reserve(ctx context.Context, key string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	if s.fail {
		return idempotency.Record{}, false, errors.New("teststore: reserve: connection refused")
	}
	s.once.Do(func() { close(s.entered) })
	<-ctx.Done()
	return idempotency.Record{}, false, fmt.Errorf("teststore: reserve: %w", ctx.Err())
}

// lockedTxStore is lockedStore in the transactional mode.
type lockedTxStore struct{ *lockedStore }

func (s lockedTxStore) InTx(ctx context.Context, fn func(context.Context) error) error {
	if err := fn(ctx); err != nil {
		return fmt.Errorf("teststore: %w", err)
	}
	return nil
}

// TestLogClientGone: a request whose client gave up while it waited on its
// key's lock is logged once, at DEBUG, in either mode; a store that fails
// a waiting client is logged once, at ERROR.
func TestLogClientGone(t *testing.T) {
	for _, mode := range []string{"plain", "transactional"} {
		for _, gone := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/client gone %v", mode, gone), func(t *testing.T) {
				logs := &logRecorder{}
				ls := &lockedStore{MemoryStore: idempotency.NewMemoryStore(idempotency.MemoryConfig{}), entered: make(chan struct{}), fail: !gone}
				var store idempotency.Store = ls
				if mode == "transactional" {
					store = lockedTxStore{ls}
				}
				var decision idempotency.Decision
				mw := idempotency.Middleware(store, idempotency.MiddlewareConfig{Logger: slog.New(logs),
					OnDecision: func(_ *http.Request, d idempotency.Decision) { decision = d }})(http.NotFoundHandler())
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")).WithContext(ctx)
				req.Header.Set(idempotency.HeaderKey, "auto-225211")
				if gone {
					go func() { <-ls.entered; cancel() }()
				}
				rec := httptest.NewRecorder()
				mw.ServeHTTP(rec, req)

				assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
				assert.Equal(t, idempotency.DecisionStoreError, decision)
				lines := logs.lines()
				require.Len(t, lines, 1, "one line per request: %q", lines)
				if gone {
					assert.True(t, strings.HasPrefix(lines[0], "DEBUG "), "a client that left is not an error: %q", lines[0])
				} else {
					assert.True(t, strings.HasPrefix(lines[0], "ERROR "), "a failing store is: %q", lines[0])
				}
			})
		}
	}
}

// failingRenewals fails every Renew, as a store that cannot be reached.
type failingRenewals struct{ *idempotency.MemoryStore }

func (failingRenewals) Renew(context.Context, string, uint64, time.Duration) error {
	return errors.New("teststore: renew: connection refused")
}

// TestLogOneLinePerRequest: a handler that runs through many failed lease
// renewals, and then cannot have its response stored (its lease ended),
// logs one line, when it ends, saying both.
func TestLogOneLinePerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &logRecorder{}
		const lease = 3 * time.Second
		mw := idempotency.Middleware(failingRenewals{idempotency.NewMemoryStore(idempotency.MemoryConfig{})},
			idempotency.MiddlewareConfig{Lease: lease, Logger: slog.New(logs)})(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(2 * lease)
				w.WriteHeader(http.StatusCreated)
			}))
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
		req.Header.Set(idempotency.HeaderKey, "k")
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusCreated, rec.Code)
		lines := logs.lines()
		require.Len(t, lines, 1, "%q", lines)
		assert.Equal(t, "WARN idempotency: response not stored", lines[0])
		r := logs.records[0]
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		assert.Contains(t, attrs["renewal_error"], "connection refused")
		assert.NotEqual(t, "0", attrs["renewals_failed"])
	})
}

// TestRequestKey: a handler reads the key its request came with, and the
// scope, with RequestKey; the client side's KeyFromContext does not see
// it. Outside a keyed request RequestKey reports false.
func TestRequestKey(t *testing.T) {
	var key, scope string
	var ok, clientSide bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, scope, ok = idempotency.RequestKey(r)
		_, clientSide = idempotency.KeyFromContext(r.Context())
	})
	mw := idempotency.Middleware(nil, idempotency.MiddlewareConfig{
		Scope: func(r *http.Request) string { return "tenant-" + r.Header.Get("X-Tenant") }})(h)

	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	req.Header.Set(idempotency.HeaderKey, `"order-1"`)
	req.Header.Set("X-Tenant", "7")
	mw.ServeHTTP(httptest.NewRecorder(), req)
	assert.True(t, ok)
	assert.Equal(t, "order-1", key, "unquoted")
	assert.Equal(t, "tenant-7", scope)
	assert.False(t, clientSide, "KeyFromContext is the client's")

	req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")) // no key
	key, scope, ok = "x", "x", true
	mw.ServeHTTP(httptest.NewRecorder(), req)
	assert.False(t, ok)
	assert.Empty(t, key+scope)
	_, _, ok = idempotency.RequestKey(nil)
	assert.False(t, ok)
}

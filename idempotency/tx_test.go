package idempotency_test

// The transactional mode (TxStore) against a fake database: a
// transaction's effects and its reservation and response are kept or
// undone together.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// txStore is a TxStore over a MemoryStore. A transaction's reservations
// are visible at once (a real database would make a concurrent insert
// wait instead), its completions and the handler's effects only at
// commit; a rollback releases its reservations.
type txStore struct {
	*idempotency.MemoryStore
	failCommit atomic.Bool
	// conflictOnce makes the next commit fail as a serialization failure
	// would, and InTx call fn again in a new transaction.
	conflictOnce atomic.Bool

	mu        sync.Mutex
	committed []string // effects of committed transactions
}

// fakeTx is one transaction of a txStore.
type fakeTx struct {
	mu        sync.Mutex
	effects   []string
	reserved  map[string]uint64
	completes []func() error
}

type txKey struct{}

var errCommit = errors.New("commit failed")

func txOf(ctx context.Context) *fakeTx {
	tx, _ := ctx.Value(txKey{}).(*fakeTx)
	return tx
}

// effect records an effect in the transaction of r's context.
func effect(r *http.Request, what string) {
	tx := txOf(r.Context())
	tx.mu.Lock()
	tx.effects = append(tx.effects, what)
	tx.mu.Unlock()
}

func (s *txStore) InTx(ctx context.Context, fn func(context.Context) error) error {
	tx := &fakeTx{reserved: map[string]uint64{}}
	err := fn(context.WithValue(ctx, txKey{}, tx))
	if err == nil && s.failCommit.Load() {
		err = errCommit
	}
	conflict := err == nil && s.conflictOnce.CompareAndSwap(true, false)
	if err != nil || conflict {
		for k, token := range tx.reserved {
			_ = s.MemoryStore.Release(context.Background(), k, token)
		}
		if conflict {
			return s.InTx(ctx, fn)
		}
		return err
	}
	for _, c := range tx.completes {
		if err := c(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.committed = append(s.committed, tx.effects...)
	s.mu.Unlock()
	return nil
}

func (s *txStore) Reserve(ctx context.Context, key string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	rec, reserved, err := s.MemoryStore.Reserve(ctx, key, fp, lease)
	if reserved {
		txOf(ctx).reserved[key] = rec.Token
	}
	return rec, reserved, err
}

func (s *txStore) Complete(ctx context.Context, key string, token uint64, resp *idempotency.Response, ttl time.Duration) error {
	tx := txOf(ctx)
	tx.completes = append(tx.completes, func() error {
		return s.MemoryStore.Complete(context.Background(), key, token, resp, ttl)
	})
	return nil
}

func (s *txStore) effects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.committed...)
}

func TestMiddlewareTransactional(t *testing.T) {
	tests := []struct {
		name string
		cfg  idempotency.MiddlewareConfig
		// first is the handler's first run; later runs answer 201.
		first      func(w http.ResponseWriter, r *http.Request)
		failCommit bool
		// what the first client sees: a status, or 0 for a dropped
		// connection, and the problem type, if any.
		wantStatus  int
		wantProblem string
		// whether the first run's effect was committed (and so a repeat
		// is replayed rather than run).
		committed bool
	}{
		{name: "success is committed, then sent",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				w.Header().Set("Location", "/orders/1")
				w.WriteHeader(201)
				io.WriteString(w, "created")
			},
			wantStatus: 201, committed: true},
		{name: "500 after the effect is committed too",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				w.WriteHeader(500)
			},
			wantStatus: 500, committed: true},
		{name: "panic rolls back and frees the key",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				panic(http.ErrAbortHandler)
			}},
		{name: "Release rolls back and sends the handler's answer",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				idempotency.Release(r)
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			},
			wantStatus: 503},
		{name: "failed commit: nothing was done",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				w.Header().Set("Location", "/orders/1")
				w.WriteHeader(201)
			},
			failCommit: true, wantStatus: 503, wantProblem: idempotency.ProblemUnavailable},
		{name: "a response too large to store rolls back",
			cfg: idempotency.MiddlewareConfig{MaxResponseBytes: 8},
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				w.Header().Set("Location", "/orders/1")
				io.WriteString(w, "more than eight bytes")
			},
			wantStatus: 500, wantProblem: idempotency.ProblemNotCommitted},
		{name: "no hijack, no flush",
			first: func(w http.ResponseWriter, r *http.Request) {
				effect(r, "order")
				rc := http.NewResponseController(w)
				_, _, herr := rc.Hijack()
				ferr := rc.Flush()
				if errors.Is(herr, http.ErrNotSupported) && errors.Is(ferr, http.ErrNotSupported) {
					w.WriteHeader(201)
					return
				}
				w.WriteHeader(418)
			},
			wantStatus: 201, committed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &txStore{MemoryStore: idempotency.NewMemoryStore(idempotency.MemoryConfig{})}
			var runs atomic.Int64
			tt.cfg.Logger = quiet
			srv := httptest.NewServer(idempotency.Middleware(store, tt.cfg)(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					if runs.Add(1) == 1 {
						tt.first(w, r)
						return
					}
					effect(r, "order")
					w.WriteHeader(201)
				})))
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			send := func() (result, error) {
				req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
				req.Header.Set("Idempotency-Key", "k")
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					return result{}, err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return result{resp.StatusCode, resp.Header, string(b)}, err
			}

			store.failCommit.Store(tt.failCommit)
			first, err := send()
			if tt.wantStatus == 0 {
				require.Error(t, err, "the server dropped the connection")
			} else {
				require.NoError(t, err)
				assert.Equal(t, tt.wantStatus, first.status, first.body)
				assert.Equal(t, tt.wantProblem, first.problemType())
				if tt.wantProblem != "" {
					assert.Empty(t, first.header.Get("Location"), "none of the handler's headers")
				}
			}
			assert.Equal(t, map[bool]int{true: 1}[tt.committed], len(store.effects()))

			store.failCommit.Store(false)
			second, err := send()
			require.NoError(t, err)
			if tt.committed {
				assert.Equal(t, tt.wantStatus, second.status)
				assert.Equal(t, "true", second.header.Get(idempotency.HeaderReplayed))
				assert.EqualValues(t, 1, runs.Load())
			} else {
				assert.Equal(t, 201, second.status, "the key was free: a fresh run")
				assert.Empty(t, second.header.Get(idempotency.HeaderReplayed))
				assert.EqualValues(t, 2, runs.Load())
			}
			assert.Equal(t, []string{"order"}, store.effects(), "exactly one effect committed")
		})
	}
}

// TestMiddlewareTransactionRetried: a store that calls fn again after a
// transient failure (a serialization failure at the commit) gets a fresh
// start: the client sees the second call's response only, with the
// headers outer middleware set but none of the first call's, and one
// effect is committed.
func TestMiddlewareTransactionRetried(t *testing.T) {
	store := &txStore{MemoryStore: idempotency.NewMemoryStore(idempotency.MemoryConfig{})}
	store.conflictOnce.Store(true)
	var runs atomic.Int64
	mw := idempotency.Middleware(store, idempotency.MiddlewareConfig{Logger: quiet})(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			n := runs.Add(1)
			effect(r, "order")
			if n == 1 {
				w.Header().Set("X-First-Call", "leaked")
			}
			w.WriteHeader(201)
			io.WriteString(w, "call "+string(rune('0'+n)))
		}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "outer")
		mw.ServeHTTP(w, r)
	}))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "call 2", string(body))
	assert.Equal(t, "outer", resp.Header.Get("X-Request-Id"))
	assert.Empty(t, resp.Header.Get("X-First-Call"))
	assert.Equal(t, []string{"order"}, store.effects())
	srv.Client().CloseIdleConnections()
}

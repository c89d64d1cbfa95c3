package percall_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/percall"
	"github.com/rebound-http/rebound/reboundtest"
)

// server answers 503 to every request and records the Idempotency-Key
// each one carried ("" when none).
type server struct {
	*httptest.Server
	mu   sync.Mutex
	keys []string
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func do(t *testing.T, client *http.Client, ctx context.Context, method, url string) {
	t.Helper()
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"n":1}`)
	}
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequestWithContext(ctx, method, url, body)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, url, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestAttempts(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) context.Context
		want int
	}{
		{"policy default", func(ctx context.Context) context.Context { return ctx }, 4},
		{"Attempts 2", func(ctx context.Context) context.Context { return percall.Attempts(ctx, 2) }, 2},
		{"Attempts 6, more than the policy", func(ctx context.Context) context.Context { return percall.Attempts(ctx, 6) }, 6},
		{"Attempts 0 is 1", func(ctx context.Context) context.Context { return percall.Attempts(ctx, 0) }, 1},
		{"NoRetry", percall.NoRetry, 1},
		{"composed, last wins", func(ctx context.Context) context.Context { return percall.NoRetry(percall.Attempts(ctx, 3)) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			client := rebound.NewClient(reboundtest.NoWait(), rebound.WithPolicy(rebound.Policy{DisableBudget: true, DisableBreaker: true}))
			defer client.CloseIdleConnections()
			do(t, client, tc.ctx(context.Background()), http.MethodGet, srv.URL)
			if got := len(srv.seen()); got != tc.want {
				t.Errorf("attempts = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	srv := newServer(t)
	client := rebound.NewClient(reboundtest.NoWait())
	defer client.CloseIdleConnections()

	do(t, client, percall.NoRetry(context.Background()), http.MethodPost, srv.URL)
	do(t, client, percall.NoRetry(percall.NoKey(context.Background())), http.MethodPost, srv.URL)
	do(t, client, percall.NoRetry(percall.Key(percall.NoKey(context.Background()), "order-17")), http.MethodPost, srv.URL)
	keys := srv.seen()
	if len(keys) != 3 {
		t.Fatalf("requests = %d, want 3", len(keys))
	}
	if keys[0] == "" {
		t.Error("a POST without per-call settings got no generated key")
	}
	if keys[1] != "" {
		t.Errorf("NoKey: key %q sent", keys[1])
	}
	if keys[2] != "order-17" {
		t.Errorf("Key after NoKey: key %q sent, want order-17", keys[2])
	}
}

// A server that never answers: AttemptTimeout ends each attempt, so the
// call ends long before its deadline, with a timeout error.
func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	client := rebound.NewClient(reboundtest.NoWait(), rebound.WithPolicy(rebound.Policy{DisableBudget: true, DisableBreaker: true}))
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = percall.Attempts(percall.AttemptTimeout(ctx, 20*time.Millisecond), 2)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := client.Do(req)
	if err == nil || !os.IsTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		t.Fatalf("the call's own deadline ended it: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 2 {
		t.Errorf("attempts = %d, want 2", hits)
	}
}

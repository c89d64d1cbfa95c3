package budget_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// trackedBody is a response body that records whether it was closed.
type trackedBody struct{ closed atomic.Bool }

func (b *trackedBody) Read([]byte) (int, error) { return 0, io.EOF }
func (b *trackedBody) Close() error             { b.closed.Store(true); return nil }

func TestGateNeverReturnsBothResponseAndError(t *testing.T) {
	// http.Client drops, without closing it, a response that comes with an
	// error; a gate must close it and return the error alone.
	errBase := errors.New("base transport bug")
	tests := []struct {
		name  string
		cfg   budget.Config
		retry bool
	}{
		{name: "first attempt", cfg: budget.Config{}},
		{name: "retry", cfg: budget.Config{}, retry: true},
		{name: "first attempt, throttled host", cfg: budget.Config{Throttle: &budget.ThrottleConfig{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := new(trackedBody)
			s := &stub{respond: func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: http.StatusOK, Body: body, Header: http.Header{}}, errBase
			}}
			gate := budget.NewTransport(s, tt.cfg)
			resp, err := gate.RoundTrip(get("http://a.test/", tt.retry))
			if resp != nil || !errors.Is(err, errBase) {
				t.Fatalf("got %v, %v; want only the error", resp, err)
			}
			if !body.closed.Load() {
				t.Fatal("the dropped response was not closed")
			}
		})
	}
}

func TestRejectProbabilityStaysAProbability(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name              string
		requests, accepts float64
		k                 float64
		want              float64
	}{
		{name: "negative k", requests: 1, accepts: 1, k: -2, want: 1},
		{name: "NaN k", requests: 10, accepts: 1, k: math.NaN(), want: 0},
		{name: "infinite k, nothing accepted", requests: 10, accepts: 0, k: inf, want: 10.0 / 11},
		{name: "infinite requests", requests: inf, accepts: 5, k: 2, want: 1},
		{name: "infinite requests and accepts", requests: inf, accepts: inf, k: 2, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := budget.RejectProbability(tt.requests, tt.accepts, tt.k)
			if !(got >= 0 && got <= 1) || math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("RejectProbability(%v, %v, %v) = %v, want %v", tt.requests, tt.accepts, tt.k, got, tt.want)
			}
		})
	}
}

func TestForgottenHostKeepsItsBudget(t *testing.T) {
	// A per-host budget that remembers longer than Config.Ratio.Window (a
	// TokenBucket of one retry a minute) must not be swapped for a new,
	// full one just because its host was idle for that window while the
	// registry was full: the host would retry more than its budget allows.
	synctest.Test(t, func(t *testing.T) {
		s := &stub{respond: status(http.StatusServiceUnavailable)}
		gate := budget.NewTransport(s, budget.Config{
			PerHost:  true,
			MaxHosts: 1,
			NewBudget: func() budget.Budget {
				return budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1.0 / 60, Burst: 1})
			},
		})
		retry := func(host string) error {
			resp, err := gate.RoundTrip(get("http://"+host+"/", true))
			if resp != nil {
				resp.Body.Close()
			}
			return err
		}
		if err := retry("a.test"); err != nil {
			t.Fatalf("a's first retry: %v", err)
		}
		time.Sleep(11 * time.Second)
		retry("b.test") // the registry is full: a is idle, b may sweep
		time.Sleep(11 * time.Second)
		if err := retry("a.test"); err != budget.ErrExhausted { // b may sweep too
			t.Fatalf("a's retry 22 s after its first: %v, want ErrExhausted (one a minute)", err)
		}
		if _, retries := s.counts(); retries != 2 {
			t.Fatalf("%d retries reached the server, want 2 (one each for a and b)", retries)
		}
	})
}

func TestCallsOverBeforeSendingAreNotCounted(t *testing.T) {
	// An attempt whose context ended before it reached the gate is never
	// sent: it must neither pay into the budget (which would let real
	// retries ride on calls that did not happen) nor spend it.
	tests := []struct {
		name      string
		overRetry bool // the attempts over before sending are retries
		wantErr   error
	}{
		{name: "first attempts deposit nothing", wantErr: budget.ErrExhausted},
		{name: "retries withdraw nothing", overRetry: true, wantErr: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stub{respond: func(r *http.Request) (*http.Response, error) {
				if err := r.Context().Err(); err != nil {
					return nil, err
				}
				return response(r, http.StatusServiceUnavailable), nil
			}}
			// Each real first attempt pays for one retry; no floor, so
			// the first case starts empty, and the second holds one.
			gate := budget.NewTransport(s, budget.Config{Ratio: budget.RatioConfig{Ratio: 1, MinPerSecond: -1}})
			if tt.overRetry {
				resp, err := gate.RoundTrip(get("http://a.test/", false))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if tt.overRetry {
				ctx = transport.WithAttempt(ctx, transport.Attempt{N: 2})
			}
			for range 10 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://a.test/", nil)
				if _, err := gate.RoundTrip(req); !errors.Is(err, context.Canceled) {
					t.Fatalf("attempt over before sending: %v, want its context's error", err)
				}
			}
			resp, err := gate.RoundTrip(get("http://a.test/", true))
			if resp != nil {
				resp.Body.Close()
			}
			if err != tt.wantErr {
				t.Fatalf("a real retry: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

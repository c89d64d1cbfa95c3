package budget_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// recorder collects OnRefuse reports.
type recorder struct {
	mu  sync.Mutex
	all []budget.Refusal
}

func (r *recorder) add(f budget.Refusal) {
	r.mu.Lock()
	r.all = append(r.all, f)
	r.mu.Unlock()
}

func (r *recorder) list() []budget.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]budget.Refusal(nil), r.all...)
}

// floorOnly is a budget of exactly n retries per 10 s, whatever the
// traffic.
func floorOnly(n float64) budget.RatioConfig {
	if n == 0 {
		return budget.RatioConfig{Ratio: -1, MinPerSecond: -1}
	}
	return budget.RatioConfig{Ratio: -1, Window: 10 * time.Second, MinPerSecond: n / 10}
}

func TestGateDepositsAndWithdraws(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	var rec recorder
	gate := budget.NewTransport(s, budget.Config{
		Ratio:    budget.RatioConfig{Ratio: 0.5, MinPerSecond: -1},
		OnRefuse: rec.add,
	})
	for range 2 {
		resp, err := gate.RoundTrip(get("http://example.test/", false))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := gate.Balance("example.test"); got != 1 {
		t.Fatalf("Balance after 2 first attempts = %v, want 1", got)
	}
	resp, err := gate.RoundTrip(get("http://example.test/", true))
	if err != nil {
		t.Fatalf("first retry refused: %v", err)
	}
	resp.Body.Close()

	req := get("http://Example.Test/", true)
	body := &closeTracker{Reader: strings.NewReader("payload")}
	req.Body = body
	resp, err = gate.RoundTrip(req)
	if resp != nil || err != budget.ErrExhausted {
		t.Fatalf("second retry: (%v, %v), want (nil, ErrExhausted)", resp, err)
	}
	if !errors.Is(err, classify.ErrNotSent) {
		t.Error("ErrExhausted does not match classify.ErrNotSent")
	}
	if !body.isClosed() {
		t.Error("the refused request's body was not closed")
	}
	if firsts, retries := s.counts(); firsts != 2 || retries != 1 {
		t.Errorf("stub saw %d first attempts and %d retries, want 2 and 1", firsts, retries)
	}
	want := []budget.Refusal{{Host: "example.test", Err: budget.ErrExhausted, Balance: 0}}
	if got := rec.list(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("refusals = %+v, want %+v", got, want)
	}
}

func TestGateRefusalMidLoopReturnsPreviousResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{respond: status(http.StatusServiceUnavailable)}
		gate := budget.NewTransport(s, budget.Config{Ratio: budget.RatioConfig{MinPerSecond: -1}})
		client := &http.Client{Transport: transport.New(gate, transport.Config{})}
		resp, err := client.Get("http://example.test/")
		if err != nil {
			t.Fatalf("caller got an error instead of the 503: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "Service Unavailable" {
			t.Errorf("caller got %d %q, want the real 503 and its body", resp.StatusCode, b)
		}
		// 0.2 of one first attempt and no floor: the retry is refused.
		if firsts, retries := s.counts(); firsts != 1 || retries != 0 {
			t.Errorf("stub saw %d first attempts and %d retries, want 1 and 0", firsts, retries)
		}
	})
}

func TestGateThrottlesFirstAttempts(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	var rec recorder
	gate := budget.NewTransport(s, budget.Config{
		Throttle: &budget.ThrottleConfig{Rand: func() float64 { return 0 }},
		OnRefuse: rec.add,
	})
	loop := transport.New(gate, transport.Config{MaxAttempts: 1})
	resp, err := loop.RoundTrip(get("http://example.test/", false))
	if err != nil {
		t.Fatalf("first call (no history) refused: %v", err)
	}
	resp.Body.Close()
	if p := gate.Probability("example.test"); p != 0.5 {
		t.Fatalf("Probability after one 503 = %v, want 1/2", p)
	}
	resp, err = loop.RoundTrip(get("http://example.test/", false))
	if resp != nil || !errors.Is(err, budget.ErrThrottled) || !errors.Is(err, classify.ErrNotSent) {
		t.Fatalf("second call: (%v, %v), want ErrThrottled matching ErrNotSent", resp, err)
	}
	if firsts, _ := s.counts(); firsts != 1 {
		t.Errorf("stub saw %d first attempts, want 1: a throttled attempt is not sent", firsts)
	}
	got := rec.list()
	if len(got) != 1 || !got[0].Throttled || got[0].Err != budget.ErrThrottled || got[0].Probability != 0.5 || got[0].Host != "example.test" {
		t.Errorf("refusals = %+v, want one throttled refusal of example.test at p = 1/2", got)
	}
	if got[0].Balance != 100.2 {
		t.Errorf("refusal balance = %v, want 100.2 (one deposit, default budget)", got[0].Balance)
	}
	// Other hosts are throttled separately.
	if p := gate.Probability("other.test"); p != 0 {
		t.Errorf("Probability of an unseen host = %v, want 0", p)
	}
}

// errNet is a network failure for the stub to return.
var errNet = errors.New("read: connection reset by peer")

func TestGateThrottleCountsAccepts(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	tests := []struct {
		name  string
		ctx   context.Context
		reply func(*http.Request) (*http.Response, error)
		want  float64 // probability after two failures and this attempt
	}{
		{name: "200 is an accept", reply: status(http.StatusOK), want: 1.0 / 4},
		{name: "404 is an accept", reply: status(http.StatusNotFound), want: 1.0 / 4},
		{name: "429 is not an accept", reply: status(http.StatusTooManyRequests), want: 3.0 / 4},
		{name: "503 is not an accept", reply: status(http.StatusServiceUnavailable), want: 3.0 / 4},
		{name: "network failure is not an accept", reply: func(*http.Request) (*http.Response, error) { return nil, errNet }, want: 3.0 / 4},
		{name: "caller cancellation is not recorded", ctx: canceled,
			reply: func(*http.Request) (*http.Response, error) { return nil, context.Canceled }, want: 2.0 / 3},
		{name: "deadline passed before sending is not recorded", ctx: expired,
			reply: func(*http.Request) (*http.Response, error) { return nil, context.DeadlineExceeded }, want: 2.0 / 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stub{respond: status(http.StatusBadGateway)}
			gate := budget.NewTransport(s, budget.Config{
				Throttle: &budget.ThrottleConfig{Rand: func() float64 { return 1 }}, // never reject
			})
			for range 2 {
				resp, _ := gate.RoundTrip(get("http://example.test/", false))
				resp.Body.Close()
			}
			s.setRespond(tt.reply)
			req := get("http://example.test/", false)
			if tt.ctx != nil {
				req = req.WithContext(tt.ctx)
			}
			if resp, _ := gate.RoundTrip(req); resp != nil {
				resp.Body.Close()
			}
			if p := gate.Probability("example.test"); math.Abs(p-tt.want) > 1e-12 {
				t.Errorf("Probability = %v, want %v", p, tt.want)
			}
		})
	}
}

func TestGatePerHost(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	gate := budget.NewTransport(s, budget.Config{PerHost: true, Ratio: floorOnly(1)})
	try := func(url string) error {
		resp, err := gate.RoundTrip(get(url, true))
		if resp != nil {
			resp.Body.Close()
		}
		return err
	}
	if err := try("http://a.test/"); err != nil {
		t.Fatalf("a's first retry: %v", err)
	}
	if err := try("http://A.TEST/x"); err != budget.ErrExhausted {
		t.Fatalf("a's second retry (upper-case host): %v, want ErrExhausted", err)
	}
	if err := try("http://b.test/"); err != nil {
		t.Fatalf("b's retry refused because of a: %v", err)
	}
	if err := try("http://a.test:8080/"); err != nil {
		t.Fatalf("another port is another host: %v", err)
	}
	for host, want := range map[string]float64{"a.test": 0, "A.Test": 0, "b.test": 0, "never.test": 1} {
		if got := gate.Balance(host); got != want {
			t.Errorf("Balance(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestGateGlobalByDefault(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	gate := budget.NewTransport(s, budget.Config{Ratio: floorOnly(1)})
	resp, err := gate.RoundTrip(get("http://a.test/", true))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := gate.RoundTrip(get("http://b.test/", true)); err != budget.ErrExhausted {
		t.Fatalf("b's retry: %v, want ErrExhausted (one budget for all hosts)", err)
	}
	if got := gate.Balance("anything"); got != 0 {
		t.Errorf("Balance = %v, want 0", got)
	}
}

func TestGateBoundedHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{respond: status(http.StatusServiceUnavailable)}
		gate := budget.NewTransport(s, budget.Config{PerHost: true, MaxHosts: 2, Ratio: floorOnly(1)})
		try := func(host string) error {
			resp, err := gate.RoundTrip(get("http://"+host+"/", true))
			if resp != nil {
				resp.Body.Close()
			}
			return err
		}
		for _, h := range []string{"a.test", "b.test", "c.test"} {
			if err := try(h); err != nil {
				t.Fatalf("%s: %v", h, err)
			}
		}
		// The table is full and nobody is idle: c and d share the
		// overflow budget, which c spent.
		if err := try("d.test"); err != budget.ErrExhausted {
			t.Fatalf("d.test beyond the bound: %v, want ErrExhausted (shared overflow budget)", err)
		}
		// Once a and b have been idle for a window, they make room.
		time.Sleep(10 * time.Second)
		if err := try("e.test"); err != nil {
			t.Fatalf("e.test after the others went idle: %v", err)
		}
		if err := try("e.test"); err != budget.ErrExhausted {
			t.Fatalf("e.test's second retry: %v, want ErrExhausted (its own budget)", err)
		}
	})
}

func TestGateUserBudget(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	made := 0
	gate := budget.NewTransport(s, budget.Config{
		PerHost: true,
		NewBudget: func() budget.Budget {
			made++
			return budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 1, Burst: 2})
		},
	})
	for _, want := range []error{nil, nil, budget.ErrExhausted} {
		resp, err := gate.RoundTrip(get("http://a.test/", true))
		if err != want {
			t.Fatalf("retry: %v, want %v", err, want)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	if made != 2 {
		t.Errorf("NewBudget called %d times, want 2 (a.test and the overflow)", made)
	}
}

func TestGateBadInput(t *testing.T) {
	gate := budget.NewTransport(nil, budget.Config{NewBudget: func() budget.Budget { return nil }})
	defer gate.CloseIdleConnections()
	if gate.Next() == nil {
		t.Fatal("nil next was not replaced by a default transport")
	}
	if got := gate.Balance(""); got != 100 {
		t.Errorf("a nil budget from NewBudget: balance %v, want the default Ratio's 100", got)
	}
	if resp, err := gate.RoundTrip(nil); resp != nil || err == nil {
		t.Errorf("RoundTrip(nil) = (%v, %v), want an error", resp, err)
	}
	body := &closeTracker{Reader: strings.NewReader("x")}
	resp, err := gate.RoundTrip(&http.Request{Method: "GET", Body: body})
	if resp != nil || err == nil || errors.Is(err, classify.ErrNotSent) {
		t.Errorf("RoundTrip(no URL) = (%v, %v), want an error that is not a gate refusal", resp, err)
	}
	if !body.isClosed() {
		t.Error("body of the invalid request was not closed")
	}
}

func TestGatePassesRequestUnchanged(t *testing.T) {
	req := get("http://example.test/", false)
	var got *http.Request
	s := &stub{respond: func(r *http.Request) (*http.Response, error) {
		got = r
		return response(r, http.StatusOK), nil
	}}
	gate := budget.NewTransport(s, budget.Config{PerHost: true, Throttle: &budget.ThrottleConfig{}})
	resp, err := gate.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != req {
		t.Error("the gate sent a different request than it was given")
	}
}

// TestOnRefuseMayCallBack checks that the hook runs with no lock held: it
// reads the transport's state, which would deadlock otherwise.
func TestOnRefuseMayCallBack(t *testing.T) {
	s := &stub{respond: status(http.StatusServiceUnavailable)}
	var (
		gate *budget.Transport
		seen []float64
	)
	gate = budget.NewTransport(s, budget.Config{
		PerHost:  true,
		Ratio:    floorOnly(0),
		Throttle: &budget.ThrottleConfig{Rand: func() float64 { return 1 }},
		OnRefuse: func(r budget.Refusal) {
			seen = append(seen, gate.Balance(r.Host), gate.Probability(r.Host))
		},
	})
	resp, err := gate.RoundTrip(get("http://example.test/", false))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := gate.RoundTrip(get("http://example.test/", true)); err != budget.ErrExhausted {
		t.Fatalf("retry: %v, want ErrExhausted", err)
	}
	if len(seen) != 2 || seen[0] != 0 || seen[1] != 0.5 {
		t.Errorf("hook saw balance and probability %v, want [0 0.5]", seen)
	}
}

// TestGateManyHostsConcurrently races lookups and insertions of more hosts
// than the bound, odd ones included, and checks every call got an answer.
func TestGateManyHostsConcurrently(t *testing.T) {
	s := &stub{respond: status(http.StatusOK)}
	gate := budget.NewTransport(s, budget.Config{PerHost: true, MaxHosts: 16, Throttle: &budget.ThrottleConfig{}})
	odd := []string{"", "[::1]:80", "ÄRGER.test", "xn--bcher-kva.example", "a.test:0", "UPPER.TEST"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				host := odd[i%len(odd)]
				if i%2 == 0 {
					host = "h" + string(rune('a'+g)) + string(rune('a'+i%26)) + ".test"
				}
				req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Host: host}, Header: http.Header{}}
				if g%2 == 1 {
					req = req.WithContext(transport.WithAttempt(context.Background(), transport.Attempt{N: 2}))
				}
				resp, err := gate.RoundTrip(req)
				if err != nil && err != budget.ErrExhausted {
					t.Errorf("host %q: %v", host, err)
				}
				if resp != nil {
					resp.Body.Close()
				}
				gate.Balance(host)
				gate.Probability(host)
			}
		}()
	}
	wg.Wait()
	if firsts, retries := s.counts(); firsts != 200 || retries == 0 {
		t.Errorf("stub saw %d first attempts and %d retries, want 200 and some", firsts, retries)
	}
}

// TestGateThrottleCountsUnansweredAttempts: an attempt that the caller's
// deadline ends while the server has not answered is not an accept.
func TestGateThrottleCountsUnansweredAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{respond: func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done() // a server that does not answer
			return nil, r.Context().Err()
		}}
		gate := budget.NewTransport(s, budget.Config{
			Throttle: &budget.ThrottleConfig{Rand: func() float64 { return 1 }}, // never reject
		})
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := gate.RoundTrip(get("http://example.test/", false).WithContext(ctx))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("attempt: %v", err)
			}
		}
		// Three requests, no accepts: (3 − 0) / (3 + 1).
		if p := gate.Probability("example.test"); math.Abs(p-3.0/4) > 1e-12 {
			t.Errorf("Probability = %v, want 3/4", p)
		}
	})
}

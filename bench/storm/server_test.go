package storm

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func get(ctx context.Context) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://service.storm/", nil)
	return req
}

// TestServerQueue follows one worker and a queue of one: the first
// request is served, the second waits, the third is answered 503 with
// Retry-After; the waiting one's client gives up, and its service is
// still done, as wasted work.
func TestServerQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		rec := newRecorder(start, time.Minute, 1)
		s := NewServer(ServerConfig{Workers: 1, Service: time.Second, FixedService: true, QueueLimit: 1, RetryAfter: 1500 * time.Millisecond}, rec)
		first := make(chan time.Duration)
		go func() {
			resp, err := s.RoundTrip(get(context.Background()))
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("first: %v, %v", resp, err)
			}
			first <- time.Since(start)
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		second := make(chan error)
		go func() {
			_, err := s.RoundTrip(get(ctx))
			second <- err
		}()
		synctest.Wait()
		resp, err := s.RoundTrip(get(context.Background()))
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "2" {
			t.Fatalf("third: %v, %v; want 503 with Retry-After: 2", resp, err)
		}
		if err := <-second; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second: %v, want its deadline", err)
		}
		if d := <-first; d != time.Second {
			t.Errorf("first answered after %v, want 1s", d)
		}
		time.Sleep(2 * time.Second) // the abandoned request is served meanwhile
		var served, wasted, rejected, attempts int64
		for _, b := range rec.snapshot() {
			served, wasted, rejected, attempts = served+b.served, wasted+b.wasted, rejected+b.rejected, attempts+b.attempts
		}
		if attempts != 3 || served != 2 || wasted != 1 || rejected != 1 {
			t.Errorf("attempts %d served %d wasted %d rejected %d; want 3, 2, 1, 1", attempts, served, wasted, rejected)
		}
		if st := s.Stats(); st.Started != 2 || st.MeanWait != 500*time.Millisecond {
			t.Errorf("stats %+v; want 2 started, mean wait 500ms", st)
		}
	})
}

// TestServerModes checks each trigger: capacity halved starts no new
// request while half the workers are busy, an outage resets what waits
// and refuses what comes, latency ×10 slows the services that start
// while it lasts.
func TestServerModes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(ServerConfig{Workers: 2, Service: time.Second, FixedService: true, QueueLimit: 10}, nil)
		took := func(n int) []time.Duration {
			out := make(chan time.Duration, n)
			for range n {
				go func() {
					start := time.Now()
					resp, err := s.RoundTrip(get(context.Background()))
					if err != nil {
						out <- -1
						return
					}
					resp.Body.Close()
					out <- time.Since(start)
				}()
			}
			var d []time.Duration
			for range n {
				d = append(d, <-out)
			}
			return d
		}
		s.SetMode(HalfCapacity)
		if d := took(2); max(d[0], d[1]) != 2*time.Second {
			t.Errorf("capacity/2: two requests took %v, want one after the other", d)
		}
		s.SetMode(SlowService)
		if d := took(1); d[0] != 10*time.Second {
			t.Errorf("latency×10: took %v, want 10s", d)
		}
		s.SetMode(Healthy)
		done := make(chan error)
		go func() {
			_, err := s.RoundTrip(get(context.Background()))
			done <- err
		}()
		synctest.Wait()
		s.SetMode(Outage)
		if err := <-done; !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("in service at the outage: %v, want a reset", err)
		}
		if _, err := s.RoundTrip(get(context.Background())); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("during the outage: %v, want refused", err)
		}
		s.SetMode(Healthy)
		if d := took(2); d[0] != time.Second || d[1] != time.Second {
			t.Errorf("healthy again: %v, want 1s each", d)
		}
	})
}

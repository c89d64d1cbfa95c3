package faults

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// TestNginxPacing drives 20 closed-loop workers per client for 7 s
// against nginx's limit_req at 50 r/s (its own 429 reply, without
// Retry-After; and with a burst of 10), and measures, after the first 2 s,
// the goodput (requests that reached the origin, per second) and the
// share of attempts nginx refused. Beside the default chain, which learns
// a throttled host's pace (package admission), runs the same chain with
// Retry.DisableAdaptivePace: the difference is what the learned pace is
// worth. The goal is goodput ≥ 90 % of the limit with ≤ 5 % of attempts
// throttled; the test asserts a looser bound on the default chain (60 %,
// 10 %): without a burst nginx refuses any two requests closer than 20 ms,
// so the loopback's jitter alone costs a rate held near the limit some
// refusals, and the other clients' workers share the machine.
func TestNginxPacing(t *testing.T) {
	const rate, settle, run = 50, 2 * time.Second, 7 * time.Second
	for _, path := range []string{"/pace/", "/paceburst/"} {
		t.Run(strings.Trim(path, "/"), func(t *testing.T) {
			o := newOrigin(64, false)
			orig := startOrigin(t, o)
			addr := startNginx(t, nginxConfig{
				Rate: rate, Origin: orig.Listener.Addr().String(),
				Upstream: orig.Listener.Addr().String(), ReadTimeout: "1s",
			})
			// The client without learned pace reuses the id the origin
			// counts for the chain without breaker, which this scenario
			// does not run.
			cs := []*client{
				newClient(plainID, "plain", nil),
				newClient(reboundID, "rebound", func(c *client, base http.RoundTripper) http.RoundTripper {
					return rebound.NewTransport(base, rebound.WithObserver(c.observer()))
				}),
				newClient(noBreakerID, "rebound, pace off", func(c *client, base http.RoundTripper) http.RoundTripper {
					return rebound.NewTransport(base, rebound.WithObserver(c.observer()),
						rebound.WithPolicy(rebound.Policy{Retry: transport.Config{DisableAdaptivePace: true}}))
				}),
			}
			t.Cleanup(func() {
				for _, c := range cs {
					c.base.CloseIdleConnections()
				}
			})
			l := load{workers: 20, duration: run, maxCalls: 100000, timeout: 3 * time.Second, method: "GET", path: path}
			// Counted by instant, in [settle, run): drive returns after the
			// calls running at run have ended.
			start := time.Now()
			o.countHits(start)
			for _, c := range cs {
				c.countAttempts(start)
			}
			lag := drive(cs, func(*client) string { return "http://" + addr + path }, l, nil)
			table(t, fmt.Sprintf("nginx limit_req %d r/s%s, 429 without Retry-After", rate, map[string]string{"/paceburst/": " burst=10 nodelay"}[path]), l, cs, lag, extra{upstream: o.upstream})
			var b strings.Builder
			fmt.Fprintf(&b, "after the first %s:\n  %-18s %10s %10s %10s\n", settle, "client", "goodput/s", "of limit", "throttled")
			goodput := make([]float64, len(cs))
			for i, c := range cs {
				attempts := c.attemptsBetween(start.Add(settle), start.Add(run))
				ok := o.hitsBetween(c, start.Add(settle), start.Add(run))
				goodput[i] = float64(ok) / (run - settle).Seconds()
				share := 0.0
				if attempts > 0 {
					share = max(float64(attempts-ok), 0) / float64(attempts)
				}
				fmt.Fprintf(&b, "  %-18s %10.1f %9.0f%% %9.1f%%\n", c.name, goodput[i], 100*goodput[i]/rate, 100*share)
				record(t, result{Scenario: fmt.Sprintf("nginx limit_req %d r/s%s, its own 429 without Retry-After", rate, map[string]string{"/paceburst/": ", burst=10 nodelay"}[path]),
					Client: c.name, Lag: ms(lag), Goodput: goodput[i], OfLimit: goodput[i] / rate, Attempts: float64(attempts) / (run - settle).Seconds(), Refused: share, P50: -1, P99: -1, OK: c.okShare(),
					Target: map[string]float64{"/pace/": 0.8, "/paceburst/": 0.9}[path]})
				if c.id == reboundID {
					expect(t, rateLimitGoodput, goodput[i] >= 0.6*rate, "%s: goodput %.1f/s, want ≥ 60 %% of %d/s", c.name, goodput[i], rate)
					expect(t, rateLimitGoodput, share <= 0.10, "%s: %.1f%% of attempts throttled, want ≤ 10 %%", c.name, 100*share)
				}
			}
			t.Log(b.String())
			checkConnections(t, cs)
		})
	}
}

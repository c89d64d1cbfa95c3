package faults

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// startProxy runs an embedded toxiproxy proxy from a free 127.0.0.1 port to
// upstream, with the given toxics (toxiproxy's JSON form) added before any
// connection, and stops it when the test ends. It returns the address to
// dial.
func startProxy(t *testing.T, upstream string, toxics ...string) string {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "faults", "127.0.0.1:0", upstream)
	for _, js := range toxics {
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			t.Fatalf("toxic %s: %v", js, err)
		}
	}
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return p.Listen
}

// toxicScenario is one toxiproxy fault between the clients and an origin.
type toxicScenario struct {
	name     string
	toxics   []string
	method   string
	body     int           // bytes of the origin's answer
	timeout  time.Duration // each call's deadline
	duration time.Duration
	okFix    fix     // what the success-rate assertion awaits
	alive    bool    // the host stays alive: its breaker must not open
	plainOK  float64 // the plain client's share of successes by design (1 - toxicity)
}

// TestToxiproxy drives the three clients through each toxiproxy fault. The
// origin closes every connection after its answer, so every call opens a
// new connection and meets a toxic with its stated toxicity,
// independently: "30 % of connections" is 30 % of calls' first attempts.
func TestToxiproxy(t *testing.T) {
	const (
		getDeadline = 2 * time.Second
		run         = 3 * time.Second
	)
	scenarios := []toxicScenario{{
		name:   "reset_peer upstream 30 %",
		toxics: []string{`{"type":"reset_peer","stream":"upstream","toxicity":0.3,"attributes":{"timeout":0}}`},
		method: http.MethodGet, body: 512, timeout: getDeadline, duration: run, okFix: tripRule, alive: true, plainOK: 0.7,
	}, {
		name:   "reset_peer downstream 30 %",
		toxics: []string{`{"type":"reset_peer","stream":"downstream","toxicity":0.3,"attributes":{"timeout":0}}`},
		method: http.MethodGet, body: 512, timeout: getDeadline, duration: run, okFix: tripRule, alive: true, plainOK: 0.7,
	}, {
		name:   "reset_peer downstream 30 %, POST",
		toxics: []string{`{"type":"reset_peer","stream":"downstream","toxicity":0.3,"attributes":{"timeout":0}}`},
		method: http.MethodPost, body: 512, timeout: getDeadline, duration: run, okFix: tripRule, alive: true, plainOK: 0.7,
	}, {
		// Not "alive" for the breaker: a stalled call holds its worker
		// until its deadline, so most of the 20 workers are soon stalled
		// at once, and calls that started together time out together: a
		// burst of 16 failures in a row, which the dead-host test may
		// rightly read as a dead host (it did in most runs on a quiet
		// machine). Trips are shown; the success rate is asserted.
		name:   "timeout (stalled connection) 20 %",
		toxics: []string{`{"type":"timeout","stream":"upstream","toxicity":0.2,"attributes":{"timeout":0}}`},
		method: http.MethodGet, body: 512, timeout: time.Second, duration: run, okFix: tripRule, plainOK: 0.8,
	}, {
		name:   "limit_data 30 % (response cut mid-body)",
		toxics: []string{`{"type":"limit_data","stream":"downstream","toxicity":0.3,"attributes":{"bytes":4096}}`},
		method: http.MethodGet, body: 16 << 10, timeout: getDeadline, duration: run, okFix: tripRule, alive: true, plainOK: 0.7,
	}, {
		name: "latency 20 ms ± 15 ms, slicer 64 ± 32 bytes",
		toxics: []string{
			`{"type":"latency","stream":"downstream","attributes":{"latency":20,"jitter":15}}`,
			`{"type":"slicer","stream":"downstream","attributes":{"average_size":64,"size_variation":32,"delay":200}}`,
		},
		method: http.MethodGet, body: 2048, timeout: getDeadline, duration: run, okFix: always, plainOK: 1,
	}, {
		name:   "slow_close 200 ms",
		toxics: []string{`{"type":"slow_close","stream":"downstream","attributes":{"delay":200}}`},
		method: http.MethodGet, body: 512, timeout: getDeadline, duration: run, okFix: always, plainOK: 1,
	}}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			o := newOrigin(sc.body, true)
			up := startOrigin(t, o)
			cs := newClients(t)
			// A proxy per client: toxiproxy accepts connections one at a
			// time, so one client's fast failures would otherwise slow the
			// others' dials.
			addrs := make(map[*client]string)
			for _, c := range cs {
				addrs[c] = startProxy(t, up.Listener.Addr().String(), sc.toxics...)
			}
			l := load{
				workers: 20, duration: sc.duration, maxCalls: 2000, pace: 10 * time.Millisecond,
				timeout: sc.timeout, method: sc.method, path: "/",
			}
			lag := drive(cs, func(c *client) string { return "http://" + addrs[c] + l.path }, l, nil)
			table(t, "toxiproxy: "+sc.name, l, cs, lag, extra{upstream: o.upstream})
			checkCommon(t, cs, lag)
			// The plain client is the control: if it failed far more
			// often than the toxic's rate, the machine (calls starved past
			// their deadlines), not the fault, decided the outcomes, and
			// comparing with it would judge the wrong thing. CI runs alone
			// on its machine, so there this fails instead.
			if got := cs[0].okShare(); got < sc.plainOK-0.2 {
				msg := fmt.Sprintf("NOT JUDGED: the plain client succeeded in %.1f %% of calls where the fault leaves %.0f %%: the machine is too loaded (lag %s) for the comparison",
					100*got, 100*sc.plainOK, lag.Round(time.Millisecond))
				if os.Getenv("CI") == "true" {
					t.Error(msg)
				} else {
					t.Log(msg)
				}
			} else {
				checkSuccessRate(t, cs, sc.okFix)
				if sc.alive {
					checkNoTrip(t, cs, tripRule)
				}
			}
			if sc.method == http.MethodPost {
				for _, c := range cs {
					dups, effects := o.duplicates(c)
					f := generatedKeys
					if c.id == plainID {
						f = always // net/http never replays a POST without a key
					}
					t.Logf("%s: %d POST effects for %d calls, %d calls ran twice or more", c.name, effects, c.calls.Load(), dups)
					expect(t, f, dups == 0, "%s: %d POST calls ran their effect more than once", c.name, dups)
				}
			}
			checkConnections(t, cs)
		})
	}
}

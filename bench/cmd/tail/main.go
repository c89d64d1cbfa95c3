// Command tail measures what hedged requests do for tail latency: a server
// on 127.0.0.1 answers 5 % of its requests after 1 s and the others after
// 1 ms (each request drawn on its own, hedges included), and 20 workers
// call it in a closed loop through a plain client, rebound with its
// defaults, and rebound with hedging (a delay too long to hedge, which
// measures the race alone; the learned delay at p95 and at p90; a second
// hedge). For each it prints the calls' p50, p99, p99.9 and maximum, and
// the extra load: requests the server received per call, and the
// connections it accepted per call.
//
// -proto chooses the protocol: h1 (HTTP/1.1), h2 (HTTP/2 over cleartext
// TCP with prior knowledge, net/http's own unencrypted HTTP/2 on both
// sides), or both, measured interleaved (each client over h1, then over
// h2, before the next client), so that a change in the machine's load
// hits both columns alike. The load average is printed before and after.
//
//	cd bench && go run ./cmd/tail                 # about 3 min
//	go run ./cmd/tail -calls 20000 -workers 20
//	go run ./cmd/tail -clients plain,hedge -proto h2
//
// Every client gets its own server and connection pool (go-cleanhttp's,
// with 64 idle connections per host so that no client pays for dialling
// more than the others), and a warm-up of -warmup calls that is not
// counted: the learned delay needs 100 attempts of the host before it
// hedges at all.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// config is one run's settings.
type config struct {
	calls, warmup, workers int
	slowShare              float64
	slow, fast             time.Duration
	seed                   uint64
	clients                []string
	protos                 []string
}

// client is one of the clients compared: its name on the command line, its
// row's label, and how it wraps the base transport.
type client struct {
	name, desc string
	make       func(base http.RoundTripper) http.RoundTripper
}

// clients are the clients compared, in the table's order.
var clients = []client{
	{"plain", "http.Client, go-cleanhttp pooled transport", func(base http.RoundTripper) http.RoundTripper { return base }},
	{"rebound", "rebound, defaults", func(base http.RoundTripper) http.RoundTripper { return rebound.NewTransport(base) }},
	{"race", "rebound, Hedge: {Delay: 10s} (the race alone: never hedges)", func(base http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{Delay: 10 * time.Second}}}))
	}},
	{"hedge", "rebound, Hedge: {} (1 hedge after the host's p95)", func(base http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{}}}))
	}},
	{"hedge90", "rebound, Hedge: {Quantile: 0.9}", func(base http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{Quantile: 0.9}}}))
	}},
	{"hedge2", "rebound, Hedge: {MaxHedges: 2}", func(base http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(base, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{MaxHedges: 2}}}))
	}},
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.calls, "calls", 10000, "calls measured per client")
	fs.IntVar(&c.warmup, "warmup", 300, "calls per client before measuring, not counted")
	fs.IntVar(&c.workers, "workers", 20, "concurrent callers, each in a closed loop")
	fs.Float64Var(&c.slowShare, "slow-share", 0.05, "share of server requests answered slowly")
	fs.DurationVar(&c.slow, "slow", time.Second, "latency of a slow answer")
	fs.DurationVar(&c.fast, "fast", time.Millisecond, "latency of the other answers")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the slow draws")
	names := fs.String("clients", "plain,rebound,race,hedge,hedge90,hedge2", "comma-separated clients to compare")
	protos := fs.String("proto", "h1,h2", "comma-separated protocols: h1 (HTTP/1.1), h2 (unencrypted HTTP/2)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, p := range strings.Split(*protos, ",") {
		if p != "h1" && p != "h2" {
			return fmt.Errorf("tail: unknown protocol %q (h1 or h2)", p)
		}
		c.protos = append(c.protos, p)
	}
	for _, n := range strings.Split(*names, ",") {
		if !slices.ContainsFunc(clients, func(cl client) bool { return cl.name == n }) {
			return fmt.Errorf("tail: unknown client %q", n)
		}
		c.clients = append(c.clients, n)
	}
	if c.calls < 1 || c.workers < 1 || c.warmup < 0 || !(c.slowShare >= 0 && c.slowShare <= 1) {
		return fmt.Errorf("tail: -calls and -workers must be positive, -warmup not negative, -slow-share in [0, 1]")
	}
	fmt.Fprintf(out, "%d workers, %d calls per client after %d warm-up calls; the server answers %.0f %% of requests after %v, the rest after %v\n\n",
		c.workers, c.calls, c.warmup, 100*c.slowShare, c.slow, c.fast)
	fmt.Fprintf(out, "load average before: %s\n\n", loadavg())
	fmt.Fprintln(out, "| client | proto | p50 | p99 | p99.9 | max | p99/p50 | server requests / call | new connections / call |")
	fmt.Fprintln(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, cl := range clients {
		if !slices.Contains(c.clients, cl.name) {
			continue
		}
		for _, proto := range c.protos {
			r, err := measure(c, proto, cl.make)
			if err != nil {
				return fmt.Errorf("tail: %s over %s: %w", cl.name, proto, err)
			}
			fmt.Fprintf(out, "| %s | %s | %v | %v | %v | %v | %.1f | %.3f | %.3f |\n", cl.desc, proto, round(r.p(0.5)), round(r.p(0.99)), round(r.p(0.999)), round(r.p(1)),
				float64(r.p(0.99))/float64(r.p(0.5)), r.load, r.conns)
		}
	}
	fmt.Fprintf(out, "\nload average after: %s\n", loadavg())
	return nil
}

// loadavg returns the machine's load averages (1, 5 and 15 min), or "?"
// where /proc/loadavg cannot be read.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// protocols returns the protocols of one side for proto: HTTP/1.1 only,
// or unencrypted HTTP/2 only (prior knowledge: no upgrade round trip).
func protocols(proto string) *http.Protocols {
	p := new(http.Protocols)
	if proto == "h2" {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return p
}

// result is one client's measurement.
type result struct {
	lat   []time.Duration // sorted
	load  float64         // server requests per call
	conns float64         // connections the server accepted per call
}

// p returns the q-quantile of the latencies (nearest rank).
func (r result) p(q float64) time.Duration {
	i := int(q*float64(len(r.lat))+0.999999) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// measure runs the warm-up and the measured calls of one client against
// a server of its own.
func measure(c config, proto string, mk func(http.RoundTripper) http.RoundTripper) (result, error) {
	srv, err := newServer(c, proto)
	if err != nil {
		return result{}, err
	}
	defer srv.close()
	base := cleanhttp.DefaultPooledTransport()
	base.MaxIdleConnsPerHost = 64
	base.Protocols = protocols(proto)
	defer base.CloseIdleConnections()
	hc := &http.Client{Transport: mk(base)}

	if err := calls(hc, srv.url, c.warmup, c.workers, nil); err != nil {
		return result{}, err
	}
	before, beforeConns := srv.requests.Load(), srv.conns.Load()
	lat := make([]time.Duration, 0, c.calls)
	var mu sync.Mutex
	err = calls(hc, srv.url, c.calls, c.workers, func(d time.Duration) {
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	})
	if err != nil {
		return result{}, err
	}
	load := float64(srv.requests.Load()-before) / float64(c.calls)
	conns := float64(srv.conns.Load()-beforeConns) / float64(c.calls)
	slices.Sort(lat)
	return result{lat: lat, load: load, conns: conns}, nil
}

// calls makes n calls from workers goroutines, reporting each one's
// latency to record (when not nil).
func calls(hc *http.Client, url string, n, workers int, record func(time.Duration)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				cancel()
				if err != nil {
					errs <- err
					return
				}
				if record != nil {
					record(time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// server answers after c.fast, or c.slow for a share of its requests, and
// counts them.
type server struct {
	url      string
	requests atomic.Int64
	conns    atomic.Int64 // connections accepted
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
}

func newServer(c config, proto string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{url: "http://" + ln.Addr().String() + "/", ln: ln, done: make(chan struct{})}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(c.seed, 0x7a11))
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		mu.Lock()
		slow := rng.Float64() < c.slowShare
		mu.Unlock()
		d := c.fast
		if slow {
			d = c.slow
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			io.WriteString(w, "ok")
		case <-r.Context().Done(): // a hedge's loser, cancelled
		}
	}), Protocols: protocols(proto), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
}

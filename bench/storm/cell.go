package storm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
)

// Defaults of Cell's zero fields.
const (
	DefaultDeadline   = 2 * time.Second
	DefaultWarmup     = 10 * time.Second
	DefaultTriggerFor = 10 * time.Second
	// DefaultPatience is how long after the trigger's removal a cell
	// may take to recover before it is called metastable.
	DefaultPatience = 60 * time.Second
	// DefaultStable is how long goodput must stay recovered for the
	// recovery to count.
	DefaultStable = 5 * time.Second
	// RecoveredShare is the share of the goodput before the trigger that
	// counts as recovered.
	RecoveredShare = 0.95
)

// Cell is one run of the storm: a fleet of Clients processes, each with
// its own chain of Library, sends open-loop Poisson arrivals at Rho times
// the server's capacity (each call to a process picked at random, so
// each process sees Poisson arrivals at Rho·C/Clients), each call bounded
// by Deadline. After Warmup the server suffers Trigger for TriggerFor,
// then is healthy again; the cell runs until the calls have been good
// for Stable (or Patience has passed since the removal) and their
// Deadline has passed. The zero value of each duration is its default.
type Cell struct {
	Library    Library
	Rho        float64
	Clients    int
	Trigger    Mode
	Server     ServerConfig
	Deadline   time.Duration
	Warmup     time.Duration
	TriggerFor time.Duration
	Patience   time.Duration
	Stable     time.Duration
	// Depth is the number of services in a row: 1 (or 0) is the fleet
	// calling the server; 2 and 3 put one and two middle layers between
	// them (StackInstances processes each, every one with its own chain
	// of Library, thread-per-request, 200 workers and 5 ms of their own
	// work per request), so that a call of the fleet becomes a call of
	// each layer to the one below. The trigger hits the bottom server,
	// and the server's measurements (attempts, waste) are the bottom's.
	Depth int
	// Layer wraps every middle layer's handling in rebound.Layer: a 502
	// it returns after its rebound calls below spent their retries tells
	// the caller above (X-Should-Retry: false) not to retry. Only rebound
	// clients set and honour it; it changes nothing for the others.
	Layer bool
	// Loopback puts real sockets between the fleet and the top server:
	// the model runs behind an httptest.Server on 127.0.0.1 and every
	// process has its own http.Transport. For the reality check, in real
	// time, outside a bubble (a bubble cannot hold network I/O). The
	// Outage trigger cannot refuse connections there: its requests end
	// with a dropped connection instead.
	Loopback bool
	// Seed seeds the arrivals and the choice of process (the server's
	// service times use Server.Seed). Zero means 1. The libraries draw
	// their jitter from math/rand's global source and goroutines run in
	// the bubble's order, so two runs of a seed agree in distribution,
	// not to the call.
	Seed uint64
}

func (c Cell) normalized() Cell {
	c.Server = c.Server.normalized()
	if c.Clients <= 0 {
		c.Clients = 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Deadline, DefaultDeadline)
	def(&c.Warmup, DefaultWarmup)
	def(&c.TriggerFor, DefaultTriggerFor)
	def(&c.Patience, DefaultPatience)
	def(&c.Stable, DefaultStable)
	c.Depth = max(c.Depth, 1)
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// String names the cell.
func (c Cell) String() string {
	name := fmt.Sprintf("%s/rho=%.2f/N=%d/%s", c.Library.Name, c.Rho, c.Clients, c.Trigger)
	if c.Depth > 1 {
		name += fmt.Sprintf("/depth=%d", c.Depth)
	}
	if c.Layer {
		name += "/layer"
	}
	return name
}

// horizon is the longest a cell runs in virtual time.
func (c Cell) horizon() time.Duration {
	return c.Warmup + c.TriggerFor + c.Patience + c.Stable + c.Deadline + time.Second
}

// layerRequest is the request a middle layer's handler serves (the model
// does not look at it).
var layerRequest = httptest.NewRequest(http.MethodGet, "http://layer.storm/", nil)

// StackInstances is how many processes each middle layer of a stack runs.
const StackInstances = 10

// stack builds the layers above bottom for a cell of Depth > 1 and
// returns them, the top one last.
func stack(c Cell, bottom *Server) []*Server {
	layers := []*Server{bottom}
	top := bottom
	for d := 2; d <= c.Depth; d++ {
		below := top
		chains := make([]*http.Client, StackInstances)
		for i := range chains {
			chains[i] = &http.Client{Transport: c.Library.New(below)}
		}
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), c.Deadline)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://layer.storm/", nil)
			if !closeOutcome(chains[rand.N(len(chains))].Do(req)) {
				w.WriteHeader(http.StatusBadGateway)
			}
		})
		if c.Layer {
			h = rebound.Layer(h)
		}
		top = NewServer(ServerConfig{
			Workers: 200, Service: 5 * time.Millisecond, Seed: c.Server.Seed + uint64(d),
			Next: func() (bool, http.Header) {
				// The layer's handler, served in memory.
				w := httptest.NewRecorder()
				h.ServeHTTP(w, layerRequest)
				return w.Code == http.StatusOK, w.Header()
			},
		}, nil)
		layers = append(layers, top)
	}
	return layers
}

// callKey is the context key of a call's attempt counter.
type callKey struct{}

// tap sits between a process's library and the server: it counts the
// attempts of each call and tells the recorder which attempts a locally
// refusing process sends (its probes).
type tap struct {
	next http.RoundTripper
	rec  *Recorder
	id   int
}

func (t *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := req.Context().Value(callKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	t.rec.sent(time.Now(), t.id)
	resp, err := t.next.RoundTrip(req)
	t.rec.answered(time.Now(), t.id, err == nil && resp.StatusCode/100 == 2)
	return resp, err
}

// Run runs the cell and measures it. Unless the cell is Loopback it
// should be called inside a testing/synctest bubble (synctest.Test): it
// sleeps for minutes of time and starts a goroutine per call, all ended
// when it returns.
func Run(c Cell) *Result {
	c = c.normalized()
	start := time.Now()
	rec := newRecorder(start, c.horizon(), c.Clients)
	bottom := NewServer(c.Server, rec)
	layers := stack(c, bottom)
	srv := layers[len(layers)-1]
	url := "http://service.storm/"
	base := func() http.RoundTripper { return srv }
	if c.Loopback {
		ts := httptest.NewServer(Handler(srv))
		defer ts.Close()
		url = ts.URL + "/"
		base = func() http.RoundTripper {
			return &http.Transport{MaxIdleConnsPerHost: 100, IdleConnTimeout: 10 * time.Second}
		}
	}
	clients := make([]*http.Client, c.Clients)
	taps := make([]*tap, c.Clients)
	for i := range clients {
		taps[i] = &tap{next: base(), rec: rec, id: i}
		clients[i] = &http.Client{Transport: c.Library.New(taps[i])}
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed*0x2545f4914f6cdd1d+1))
	rate := c.Rho * c.Server.Capacity()
	triggerAt := start.Add(c.Warmup)
	removeAt := triggerAt.Add(c.TriggerFor)
	stopAt := start.Add(c.horizon() - c.Deadline - time.Second)
	nextCheck := removeAt.Add(c.Stable + c.Deadline + time.Second)

	var wg sync.WaitGroup
	call := func(cl *http.Client, id int) {
		defer wg.Done()
		var attempts atomic.Int64
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), callKey{}, &attempts), c.Deadline)
		defer cancel()
		begin := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		ok := closeOutcome(cl.Do(req))
		rec.call(begin, time.Now(), id, ok, attempts.Load())
	}
	triggered, removed := false, false
	next := start
	for {
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
		if !triggered && !next.Before(triggerAt) {
			time.Sleep(time.Until(triggerAt))
			bottom.SetMode(c.Trigger)
			triggered = true
		}
		if !removed && !next.Before(removeAt) {
			time.Sleep(time.Until(removeAt))
			bottom.SetMode(Healthy)
			removed = true
		}
		if !next.Before(nextCheck) {
			time.Sleep(time.Until(nextCheck))
			// Calls that started before now−Deadline have all ended.
			if _, ok := recovery(rec.snapshot(), c, ticks(nextCheck.Sub(start)-c.Deadline-Tick)); ok {
				stopAt = nextCheck
			}
			nextCheck = nextCheck.Add(time.Second)
		}
		if !next.Before(stopAt) {
			break
		}
		time.Sleep(time.Until(next))
		wg.Add(1)
		id := rng.IntN(c.Clients)
		go call(clients[id], id)
	}
	wg.Wait()
	// The middle layers' calls below outlive the fleet's: let them end
	// (each within a Deadline), or their goroutines would be left behind.
	for _, l := range layers[1:] {
		for !l.idle() {
			time.Sleep(Tick)
		}
	}
	for _, cl := range clients {
		cl.CloseIdleConnections()
	}
	for _, t := range taps {
		if ht, ok := t.next.(*http.Transport); ok {
			ht.CloseIdleConnections()
		}
	}
	r := analyse(c, rec.snapshot(), time.Since(start))
	r.AmpClientMax, r.AmpClients = rec.maxClientAmp(1000)
	return r
}

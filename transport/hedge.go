package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
)

// Defaults of a HedgeConfig's zero fields.
const (
	DefaultHedgeQuantile = 0.95
	DefaultHedgeMin      = time.Millisecond
	DefaultHedgeMax      = time.Second
	DefaultHedgeSamples  = 100
)

// HedgeConfig configures hedged requests (Config.Hedge). When an attempt
// of a request that is safe to repeat has not answered after the hedge
// delay, the loop sends another in parallel, and another after each
// further delay, up to MaxHedges; the first usable answer wins (any
// outcome the loop would not retry: a success, a 404), and the others are
// let go:
//
//   - a loser that answers within one more hedge delay is drained and
//     closed, so its keep-alive connection is reused; one still waiting
//     then is cancelled (over HTTP/1.1 its connection is closed, as for
//     any request abandoned before its answer; HTTP/2 resets the stream
//     only);
//   - a loser's outcome counts for the breaker only when it finished on
//     its own: a cancelled attempt is neutral to it (classify.ServerHealth);
//   - an attempt that fails retryably while another is still waiting does
//     not end the race: the loop waits for the others, and retries (with
//     its backoff) only when every attempt of the race has failed.
//
// The hedge delay is Delay when it is set; otherwise the Quantile of the
// host's recent attempt latencies (the time to response headers), within
// [MinDelay, MaxDelay]. A host with fewer than MinSamples recent attempts
// is not hedged (unless Delay is set): hedging blind could double the load
// of a host whose answers are slow but normal. Attempts cancelled because
// they lost are not counted (their latency is unknown).
//
// Hedges are attempts: each has its own number (Attempt.N, Attempt.Hedge,
// EventHedge) and counts toward Config.MaxAttempts, so a call whose
// attempts are used up by hedges is not retried further; a hedge is sent
// only while the call has attempts left. Through a rebound chain a hedge
// meets the retry budget as a retry (a host that is failing cannot be
// hedged into overload) and the breaker (a host whose circuit is open is
// never hedged); the loop sends no hedge to a host whose admission is
// paused, paced or has calls waiting (see package admission). A
// gate's refusal of a hedge ends the hedging of that attempt, and
// the attempts already sent go on. A request body is sent whole by every
// hedge: through GetBody, or from the recording of the first attempt when
// that attempt has already sent the whole body (a body still streaming
// when the delay ends is not hedged). Requests that are not safe to repeat
// (classify.Idempotent) and protocol upgrades are never hedged.
//
// The zero value is the default of every field: one hedge, after the
// host's 95th percentile, between 1 ms and 1 s.
type HedgeConfig struct {
	// MaxHedges is the most hedges sent for one attempt. Zero means 1.
	MaxHedges int
	// Delay, when positive, is a fixed hedge delay. Zero means the delay
	// is learned from the host's latency.
	Delay time.Duration
	// Quantile of the host's recent attempt latencies that sets the
	// learned delay, in (0, 1). Zero means 0.95: about one attempt in
	// twenty is hedged when the host is steady.
	Quantile float64
	// MinDelay is the shortest learned delay. Zero means 1 ms.
	MinDelay time.Duration
	// MaxDelay is the longest learned delay. Zero means 1 s.
	MaxDelay time.Duration
	// MinSamples is how many recent attempts of a host are needed before
	// its delay is learned. Zero means 100.
	MinSamples int
}

// normalize returns c with defaults in place of zero (or meaningless)
// values.
func (c HedgeConfig) normalize() *HedgeConfig {
	if c.MaxHedges <= 0 {
		c.MaxHedges = 1
	}
	c.Delay = max(c.Delay, 0)
	if !(c.Quantile > 0 && c.Quantile < 1) || math.IsNaN(c.Quantile) {
		c.Quantile = DefaultHedgeQuantile
	}
	if c.MinDelay <= 0 {
		c.MinDelay = DefaultHedgeMin
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultHedgeMax
	}
	c.MaxDelay = max(c.MaxDelay, c.MinDelay)
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultHedgeSamples
	}
	return &c
}

// errHedgeLost is the cause of a losing attempt's context. It is not
// classify.ErrAttemptTimeout, so the links inside the loop see the attempt
// as cancelled: neutral.
var errHedgeLost = errors.New("transport: hedged attempt lost the race")

// hedgeable reports whether attempt n of req may be hedged, and after how
// long (0: it may not).
func (t *Transport) hedgeable(req *http.Request, rec *recorder, h *hostLatency, n, maxAttempts int) time.Duration {
	l := t.lat
	if l.hedge == nil || n >= maxAttempts || !classify.Idempotent(req) || req.Header.Get("Upgrade") != "" {
		return 0
	}
	if hasBody(req) && rec == nil && req.GetBody == nil || t.busy(req) {
		return 0
	}
	return l.learnedHedge(h)
}

// raceResult is one attempt's result in a race.
type raceResult struct {
	i    int // index of the attempt in the race
	resp *http.Response
	err  error
}

// racer is one attempt of a race.
type racer struct {
	req    *http.Request // with the racer's own context
	n      int           // attempt number
	cancel context.CancelCauseFunc
	done   bool
}

// sendAttempt sends attempt n of req (out), hedged when it may be, and
// returns the outcome the loop acts on, and the number of the last attempt
// sent. verdict is set when the attempt was raced: the race has already
// classified (and asked Config.Decide about) the outcome it returns.
func (t *Transport) sendAttempt(req, out *http.Request, rec *recorder, n int, start time.Time, maxAttempts int, configured time.Duration) (resp *http.Response, err error, verdict *classify.Verdict, last int) {
	h := t.lat.host(hostname.FromURL(req.URL))
	delay := t.hedgeable(req, rec, h, n, maxAttempts)
	if delay <= 0 {
		resp, err = t.sendTracked(req, out, h, n, maxAttempts, configured)
		return resp, err, nil, n
	}
	return t.race(req, out, rec, h, n, start, maxAttempts, configured, delay)
}

// race sends attempt n (out) and hedges it every delay while it, and the
// hedges, wait; see HedgeConfig.
func (t *Transport) race(req, out *http.Request, rec *recorder, h *hostLatency, n int, start time.Time, maxAttempts int, configured, delay time.Duration) (*http.Response, error, *classify.Verdict, int) {
	cfg := &t.cfg
	most := min(maxAttempts, n+t.lat.hedge.MaxHedges)
	results := make(chan raceResult, most-n+1)
	racers := make([]racer, 0, most-n+1)
	launch := func(r *http.Request, num int) {
		actx, cancel := context.WithCancelCause(r.Context())
		ar := r.WithContext(actx)
		i := len(racers)
		racers = append(racers, racer{req: ar, n: num, cancel: cancel})
		go func() {
			resp, err := t.sendTracked(req, ar, h, num, maxAttempts, configured)
			results <- raceResult{i: i, resp: resp, err: err}
		}()
	}
	raceStart := time.Now()
	launch(out, n)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	hedging := true
	last := n // the last attempt sent
	pending := 1
	var (
		kept    raceResult // the latest retryable outcome, returned if every attempt fails
		keptV   classify.Verdict
		hasKept bool
	)
	for {
		select {
		case <-timer.C:
			if !hedging || last >= most {
				continue
			}
			if t.busy(req) {
				hedging = false
				continue
			}
			hr, ok := t.hedgeRequest(req, rec, last+1, raceStart)
			if !ok {
				hedging = false
				continue
			}
			last++
			if cfg.Observer != nil {
				cfg.Observer.Observe(Event{Kind: EventHedge, Request: req, Attempt: last, Delay: time.Since(raceStart)})
			}
			launch(hr, last)
			pending++
			if last < most {
				timer.Reset(delay)
			}
		case r := <-results:
			pending--
			a := &racers[r.i]
			a.done = true
			if r.err != nil && errors.Is(r.err, classify.ErrNotSent) {
				// A gate refused this attempt: nothing was sent, and
				// the next hedge would be refused too.
				a.cancel(nil)
				hedging = false
				if a.n == last {
					last--
				}
				switch {
				case pending > 0:
					continue
				case hasKept:
					return t.endRace(racers, results, kept, &keptV, last, delay)
				}
				// The race's only attempt was refused: the loop
				// reports the refusal of attempt n.
				v := cfg.Classifier.Classify(req, nil, r.err)
				return t.endRace(racers, results, r, &v, n, delay)
			}
			v := cfg.Classifier.Classify(req, r.resp, r.err)
			if cfg.Decide != nil {
				v = t.decide(a.req, r.resp, r.err, v, configured)
			}
			if hasKept {
				// A newer outcome replaces the one kept.
				release(outcome{resp: kept.resp}, cfg.MaxResponseBytes)
				racers[kept.i].cancel(nil)
				hasKept = false
			}
			if v.Outcome != classify.Retryable || pending == 0 {
				return t.endRace(racers, results, r, &v, last, delay)
			}
			// A retryable failure while other attempts still wait: they
			// may yet answer. Keep it in case none does.
			kept, keptV, hasKept = r, v, true
		}
	}
}

// endRace hands r, the race's outcome, to the loop, and lets the attempts
// still waiting go (see HedgeConfig): each gets as long again as the
// hedge delay to answer, then is cancelled; its response, if any, is
// drained and closed.
func (t *Transport) endRace(racers []racer, results chan raceResult, r raceResult, v *classify.Verdict, last int, grace time.Duration) (*http.Response, error, *classify.Verdict, int) {
	win := &racers[r.i]
	if r.resp != nil {
		// The winner's context ends when its body is closed.
		if r.resp.StatusCode == http.StatusSwitchingProtocols {
			win.cancel(nil)
		} else {
			r.resp.Body = &cancelBody{ReadCloser: r.resp.Body, cancel: win.cancel}
		}
	} else {
		win.cancel(nil)
	}
	var waiting []context.CancelCauseFunc // of the attempts still waiting
	for i := range racers {
		if !racers[i].done && i != r.i {
			waiting = append(waiting, racers[i].cancel)
		}
	}
	if len(waiting) > 0 {
		timer := time.AfterFunc(grace, func() {
			for _, cancel := range waiting {
				cancel(errHedgeLost)
			}
		})
		limit := t.cfg.MaxResponseBytes
		go func() {
			for range waiting {
				l := <-results
				if l.resp != nil {
					discard(l.resp, limit)
				}
				racers[l.i].cancel(nil)
			}
			timer.Stop()
		}()
	}
	return r.resp, r.err, v, last
}

// busy reports whether req's host is paused or paced by its admission
// (see package admission): a hedge would spend turns others wait for.
func (t *Transport) busy(req *http.Request) bool {
	return t.adm.Busy(req)
}

// hedgeRequest returns the request for hedge n: a shallow copy of req
// with the attempt, marked as a hedge, in its context and the whole body.
// It reports false when the body cannot be sent whole now.
func (t *Transport) hedgeRequest(req *http.Request, rec *recorder, n int, start time.Time) (*http.Request, bool) {
	out := req.WithContext(WithAttempt(req.Context(), Attempt{N: n, Start: start, Hedge: true}))
	switch {
	case !hasBody(req):
	case rec != nil:
		data, ok := rec.recorded()
		if !ok {
			return nil, false
		}
		out.Body = io.NopCloser(bytes.NewReader(data))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	case req.GetBody != nil:
		body, err := req.GetBody()
		if err != nil || body == nil {
			return nil, false
		}
		out.Body = body
	default:
		return nil, false
	}
	if t.cfg.AttemptHeader != "" {
		setAttemptHeader(out, t.cfg.AttemptHeader, n)
	}
	return out, true
}

// recorded returns the whole body when the first attempt has read all of
// it from the source within the limit. The bytes are never written again:
// a hedge reads them without disturbing the attempts that read the
// recorder.
func (r *recorder) recorded() ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow || r.srcErr != io.EOF {
		return nil, false
	}
	return r.buf, true
}

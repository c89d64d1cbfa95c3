package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/internal/learnedcut"
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
// only while the call has attempts left. A hedge takes a turn from its
// host's admission like any attempt, but never waits for one: a host
// whose admission is paused, paced or has calls waiting is not hedged
// (see package admission). Every racer's result is reported to admission
// as soon as it comes, a loser's included, so a server's wait hint
// (a 429 with Retry-After) takes effect at once; and a racer's wait hint
// stops the hedging of its call. When every attempt of a race fails, the
// loop acts on the one that carried a wait hint, if any, else on the
// latest. Through a rebound chain a hedge meets the retry budget as a
// retry (a host that is failing cannot be hedged into overload) and the
// breaker (a host whose circuit is open is never hedged). A gate's
// refusal of a hedge ends the hedging of that attempt, and the attempts
// already sent go on; EventHedge reports only hedges that were sent. A
// request body is sent whole by every hedge: through GetBody, or from the
// recording of the first attempt when that attempt has already sent the
// whole body (a body still streaming when the delay ends is not hedged).
// Requests that are not safe to repeat (classify.Idempotent) and protocol
// upgrades are never hedged.
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
	turn   admission.Turn // its turn at the host's admission, reported when its result comes
	sent   *hedgeSent     // a hedge's event, emitted once it is sent; nil for the race's first attempt
	done   bool
}

// hedgeSent emits a hedge's EventHedge once, when the hedge is known to be
// sent: when net/http starts getting it a connection (every gate has let
// it through), or when it comes back not refused by a gate, for a base
// that is not net/http's.
type hedgeSent struct {
	once  sync.Once
	obs   Observer
	req   *http.Request
	n     int
	delay time.Duration
}

func (h *hedgeSent) emit() {
	h.once.Do(func() {
		h.obs.Observe(Event{Kind: EventHedge, Request: h.req, Attempt: h.n, Delay: h.delay})
	})
}

// sendAttempt sends attempt n of req (out), on turn, hedged when it may
// be, and returns the outcome the loop acts on, and the number of the last
// attempt sent. verdict is set when the attempt was raced: the race has
// already classified (and asked Config.Decide about) the outcome it
// returns, and reported every racer's turn.
func (t *Transport) sendAttempt(turn *admission.Turn, req, out *http.Request, rec *recorder, n int, start time.Time, maxAttempts int, configured time.Duration) (resp *http.Response, err error, verdict *classify.Verdict, last int) {
	h := t.lat.host(hostname.FromURL(req.URL))
	delay := t.hedgeable(req, rec, h, n, maxAttempts)
	if delay <= 0 {
		resp, err = t.sendTracked(req, out, h, n, maxAttempts, configured)
		return resp, err, nil, n
	}
	return t.race(turn, req, out, rec, h, n, start, maxAttempts, configured, delay)
}

// hedgeTurn takes a turn for a hedge of req: one given at once, or none
// (a hedge never waits for a turn: a host that makes turns wait is paused,
// paced or has calls queued, and a hedge would take a turn they wait for).
func (t *Transport) hedgeTurn(req *http.Request) (admission.Turn, bool) {
	if t.busy(req) {
		return admission.Turn{}, false // throttled lately, paused, paced or queued
	}
	return t.adm.TryTake(req) // a hedge never waits for a turn
}

// race sends attempt n (out), on turn, and hedges it every delay while it,
// and the hedges, wait; see HedgeConfig. Every racer's turn is reported
// as soon as its result comes (so a wait hint reaches the host's admission
// at once, a loser's included); the loop's own report of turn is then a
// no-op.
func (t *Transport) race(turn *admission.Turn, req, out *http.Request, rec *recorder, h *hostLatency, n int, start time.Time, maxAttempts int, configured, delay time.Duration) (*http.Response, error, *classify.Verdict, int) {
	cfg := &t.cfg
	most := raceSize(n, maxAttempts, t.lat.hedge.MaxHedges)
	results := make(chan raceResult, most-n+1)
	racers := make([]racer, 0, most-n+1)
	launch := func(r *http.Request, num int, tn admission.Turn, sent *hedgeSent) {
		ctx := r.Context()
		if sent != nil {
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GetConn: func(string) { sent.emit() }})
		}
		actx, cancel := context.WithCancelCause(ctx)
		ar := r.WithContext(actx)
		i := len(racers)
		// racers never grows past its capacity: &racers[i] is stable.
		racers = append(racers, racer{req: ar, n: num, cancel: cancel, turn: tn, sent: sent})
		go func() {
			resp, err := t.sendTracked(req, ar, h, num, maxAttempts, configured)
			results <- raceResult{i: i, resp: resp, err: err}
		}()
	}
	first := *turn
	*turn = admission.Turn{} // the race reports it; the loop's report is then a no-op
	raceStart := time.Now()
	launch(out, n, first, nil)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	hedging := true
	last := n // the last attempt sent
	pending := 1
	var (
		kept     raceResult // the retryable outcome returned if every attempt fails: the latest, or one with a wait hint
		keptV    classify.Verdict
		hasKept  bool
		keptHint bool
	)
	for {
		select {
		case <-timer.C:
			if !hedging || last >= most {
				continue
			}
			tn, ok := t.hedgeTurn(req)
			if !ok {
				hedging = false
				continue
			}
			hr, ok := t.hedgeRequest(req, rec, last+1, raceStart, learnedcut.Marked(out.Context()))
			if !ok {
				tn.Cancel()
				hedging = false
				continue
			}
			last++
			var sent *hedgeSent
			if cfg.Observer != nil {
				sent = &hedgeSent{obs: cfg.Observer, req: req, n: last, delay: time.Since(raceStart)}
			}
			launch(hr, last, tn, sent)
			pending++
			if last < most {
				timer.Reset(delay)
			}
		case r := <-results:
			pending--
			a := &racers[r.i]
			a.done = true
			a.turn.Done(r.resp, r.err)
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
			if a.sent != nil {
				a.sent.emit()
			}
			v := cfg.Classifier.Classify(req, r.resp, r.err)
			if cfg.Decide != nil {
				v = t.decide(a.req, r.resp, r.err, v, configured)
			}
			hint := r.resp != nil && hasWaitHint(r.resp)
			if hint {
				// The server asked for quiet: no further hedge of this
				// call goes before the hint ends (admission holds the
				// host's other calls; the loop's retry waits for it).
				hedging = false
			}
			if v.Outcome != classify.Retryable || pending == 0 {
				if hasKept {
					if v.Outcome == classify.Retryable && keptHint && !hint {
						// Every attempt failed: the one with the
						// server's wait hint is what the loop acts on.
						release(outcome{resp: r.resp}, cfg.MaxResponseBytes)
						a.cancel(nil)
						return t.endRace(racers, results, kept, &keptV, last, delay)
					}
					release(outcome{resp: kept.resp}, cfg.MaxResponseBytes)
					racers[kept.i].cancel(nil)
				}
				return t.endRace(racers, results, r, &v, last, delay)
			}
			// A retryable failure while other attempts still wait: they
			// may yet answer. Keep it in case none does; a hint is kept
			// over a later failure without one.
			if hasKept && keptHint && !hint {
				release(outcome{resp: r.resp}, cfg.MaxResponseBytes)
				a.cancel(nil)
				continue
			}
			if hasKept {
				release(outcome{resp: kept.resp}, cfg.MaxResponseBytes)
				racers[kept.i].cancel(nil)
			}
			kept, keptV, hasKept, keptHint = r, v, true, hint
		}
	}
}

// raceSize returns the number of the last attempt a race that starts at
// attempt n may send: n plus its hedges, within maxAttempts (≥ n). It
// never adds n and maxHedges, which may be as large as math.MaxInt.
func raceSize(n, maxAttempts, maxHedges int) int {
	return n + min(maxAttempts-n, maxHedges)
}

// hasWaitHint reports whether resp carries a server's wait hint.
func hasWaitHint(resp *http.Response) bool {
	_, ok := classify.WaitHint(resp.Header, time.Now())
	return ok
}

// endRace hands r, the race's outcome, to the loop, and lets the attempts
// still waiting go (see HedgeConfig): each gets as long again as the
// hedge delay to answer, then is cancelled; its response, if any, is
// drained and closed, after its turn has been reported (a loser's wait
// hint reaches the host's admission).
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
				a := &racers[l.i]
				a.turn.Done(l.resp, l.err)
				if a.sent != nil && (l.err == nil || !errors.Is(l.err, classify.ErrNotSent)) {
					a.sent.emit()
				}
				if l.resp != nil {
					discard(l.resp, limit)
				}
				a.cancel(nil)
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
func (t *Transport) hedgeRequest(req *http.Request, rec *recorder, n int, start time.Time, cut bool) (*http.Request, bool) {
	ctx := WithAttempt(req.Context(), Attempt{N: n, Start: start, Hedge: true})
	if cut {
		ctx = learnedcut.Mark(ctx) // as the attempt it joins is
	}
	out := req.WithContext(ctx)
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

package admission

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// get returns a GET to host with ctx and, when cred is not empty, an
// Authorization header of cred.
func get(t testing.TB, ctx context.Context, host, cred string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	return req
}

// answer returns a response to req with status code and header pairs.
func answer(req *http.Request, code int, pairs ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Set(pairs[i], pairs[i+1])
	}
	return &http.Response{StatusCode: code, Header: h, Body: http.NoBody, Request: req}
}

// send takes a turn for req, waits for it if queued, and reports resp
// for it; it returns when the turn was given (zero when refused) and the
// refusal.
func send(a *Admission, req *http.Request, resp func(*http.Request) *http.Response) (time.Time, error) {
	turn, wait, err := a.Take(req)
	if err != nil {
		return time.Time{}, err
	}
	if wait > 0 {
		if err := turn.Wait(req.Context()); err != nil {
			return time.Time{}, err
		}
	}
	at := time.Now()
	turn.Done(resp(req), nil)
	return at, nil
}

// idle reports every state of a with nothing queued or in flight, and
// whether its counters agree with its table.
func (a *Admission) idleForTest() (queued, inflight, states int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.hosts {
		for _, st := range h.creds {
			queued += len(st.queue)
			inflight += st.inflight
			states++
		}
	}
	if states != a.n || int32(a.n) != a.states.Load() {
		return -1, -1, -1
	}
	return queued, inflight, states
}

// pause sends pauseEvidence attempts of a key that the server answers
// with code and header pairs: the first makes the key's state (one
// throttle is not a pattern: it delays only its own call), the last, given
// by that state while nothing was admitted, pauses the key.
func pause(t testing.TB, a *Admission, req func() *http.Request, code int, pairs ...string) {
	t.Helper()
	for range pauseEvidence {
		if _, err := send(a, req(), func(r *http.Request) *http.Response { return answer(r, code, pairs...) }); err != nil {
			t.Fatal(err)
		}
	}
}

package idempotency

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Problem types (RFC 9457 "type" members) of the middleware's own answers.
// Each is a link to its own documentation here.
const (
	problemBase = "https://pkg.go.dev/github.com/rebound-http/rebound/idempotency#"

	// ProblemInvalidKey (400): the key is empty, too long, malformed, or
	// given more than once.
	ProblemInvalidKey = problemBase + "ProblemInvalidKey"
	// ProblemMissingKey (400): MiddlewareConfig.Required is set and the
	// request has no key.
	ProblemMissingKey = problemBase + "ProblemMissingKey"
	// ProblemBodyTooLarge (413): the body is over
	// MiddlewareConfig.MaxBodyBytes, or over the limit of an
	// http.MaxBytesReader in front, so it cannot be fingerprinted.
	ProblemBodyTooLarge = problemBase + "ProblemBodyTooLarge"
	// ProblemInFlight (409, with Retry-After): a request with this key is
	// still being processed.
	ProblemInFlight = problemBase + "ProblemInFlight"
	// ProblemKeyReused (422): the key was used for a different request
	// (method, path, query or body).
	ProblemKeyReused = problemBase + "ProblemKeyReused"
	// ProblemNotReplayable (410): a request with this key was processed
	// but its response could not be stored; it will not be processed again.
	ProblemNotReplayable = problemBase + "ProblemNotReplayable"
	// ProblemOutcomeUnknown (500): a request with this key ran, but the
	// middleware does not know what it did or answered (its handler
	// panicked, took over the connection, or returned without writing
	// after its client left); its effect may have happened, so it will
	// not be processed again. Check the effect some other way.
	ProblemOutcomeUnknown = problemBase + "ProblemOutcomeUnknown"
	// ProblemNotCommitted (500, transactional mode only): the handler's
	// response could not be stored with its transaction (it was over
	// MaxResponseBytes, or switched protocols), so the transaction was
	// rolled back: nothing was done and the key is free.
	ProblemNotCommitted = problemBase + "ProblemNotCommitted"
	// ProblemUnavailable (503, with Retry-After): the store failed or is
	// full, so the request was not processed.
	ProblemUnavailable = problemBase + "ProblemUnavailable"
	// ProblemInvalidRecord (500): the Store returned a completed record
	// whose status no handler can have written (outside 200–999); nothing
	// is replayed and the handler is not run.
	ProblemInvalidRecord = problemBase + "ProblemInvalidRecord"
)

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// writeProblem answers with an application/problem+json body. A positive
// retryAfter adds a Retry-After header, in whole seconds rounded up.
func writeProblem(w http.ResponseWriter, status int, typ, detail string, retryAfter time.Duration) {
	body, _ := json.Marshal(problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
	w.Write(body)
}

// Decision is what the middleware did with a request, reported to
// MiddlewareConfig.OnDecision. The zero value is DecisionPass.
type Decision uint8

const (
	// DecisionPass: the request has no key (or a method that takes none)
	// and went to the handler untouched.
	DecisionPass Decision = iota
	// DecisionExecuted: the handler ran and its response was stored.
	DecisionExecuted
	// DecisionReleased: the handler ran and its key was released so a
	// retry runs it again: it called Release, or an opt-out
	// (MiddlewareConfig.Release, ReleaseAborted) applied, or (in
	// transactional mode) it panicked and its transaction was rolled back.
	DecisionReleased
	// DecisionReplayed: a stored response was replayed.
	DecisionReplayed
	// DecisionInFlight: 409, the key is held by a request still running.
	DecisionInFlight
	// DecisionKeyReused: 422, the key belongs to a different request.
	DecisionKeyReused
	// DecisionNotReplayable: 410, the key was used but its response was
	// not stored.
	DecisionNotReplayable
	// DecisionInvalidKey: 400, the key is malformed or given twice, or
	// missing while Required, or the body could not be read.
	DecisionInvalidKey
	// DecisionBodyTooLarge: 413, the body is over the limit.
	DecisionBodyTooLarge
	// DecisionStoreError: 503, the store failed to reserve (or, in
	// transactional mode, to commit); or 500, it returned a completed
	// record with an invalid status.
	DecisionStoreError
	// DecisionLeaseLost: the handler ran and its response was sent, but
	// the store no longer held its reservation (the lease expired), so the
	// response was not stored.
	DecisionLeaseLost
	// DecisionStoreFull: 503, the store (or the key's scope) had no room
	// for a new key; the handler did not run.
	DecisionStoreFull
	// DecisionAborted: the handler ran but panicked, took over the
	// connection, or returned without writing after its client left; its
	// key was completed as OutcomeUnknown.
	DecisionAborted
	// DecisionOutcomeUnknown: 500, the key's first request ended with an
	// unknown outcome (DecisionAborted); the handler did not run again.
	DecisionOutcomeUnknown
	// DecisionNotCommitted: 500, transactional mode: the response could
	// not be stored, so the transaction was rolled back.
	DecisionNotCommitted
)

var decisionNames = [...]string{
	DecisionPass:           "pass",
	DecisionExecuted:       "executed",
	DecisionReleased:       "released",
	DecisionReplayed:       "replayed",
	DecisionInFlight:       "in flight",
	DecisionKeyReused:      "key reused",
	DecisionNotReplayable:  "not replayable",
	DecisionInvalidKey:     "invalid key",
	DecisionBodyTooLarge:   "body too large",
	DecisionStoreError:     "store error",
	DecisionLeaseLost:      "lease lost",
	DecisionStoreFull:      "store full",
	DecisionAborted:        "aborted",
	DecisionOutcomeUnknown: "outcome unknown",
	DecisionNotCommitted:   "not committed",
}

// String returns a short, stable name such as "replayed", usable as a
// metric label.
func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "decision(" + strconv.Itoa(int(d)) + ")"
}

package idempotency

import (
	"context"
	"errors"
	"maps"
	"net/http"
)

// errRollback is what the middleware's transaction function returns to
// have the store roll back.
var errRollback = errors.New("idempotency: roll back")

// txRun is what one transactional request did, learned inside InTx.
type txRun struct {
	called   bool // InTx called fn
	rec      Record
	reserved bool
	err      error // Reserve's error
	x        *execution
	panicked bool
	panicVal any
	release  bool // the handler or cfg.Release asked to release the key
	tooLarge bool // the response cannot be stored
}

// serveTx serves a keyed request in one transaction of m.tx: reserve, run
// the handler with the transaction in its context and its response
// buffered, complete, commit; then send the response. See TxStore.
func (m *middleware) serveTx(w http.ResponseWriter, r *http.Request, body []byte, key, skey string, fp Fingerprint) {
	var run txRun
	// The headers as they were before the handler, set by outer middleware:
	// what the middleware's own answers and a second call of fn start from.
	base := w.Header().Clone()
	restore := func() {
		h := w.Header()
		clear(h)
		maps.Copy(h, base)
	}
	err := m.tx.InTx(r.Context(), func(ctx context.Context) error {
		if run.called { // InTx calls again after a transient failure
			restore()
		}
		run = txRun{called: true}
		run.rec, run.reserved, run.err = m.store.Reserve(ctx, skey, fp, m.cfg.Lease)
		if run.err != nil || !run.reserved {
			return errRollback
		}
		x, in := m.newExecution(w, r, ctx, body, true)
		x.skey = skey // for DerivedKey
		run.x = x
		m.runCatching(&run, in)
		rec := &x.rec
		switch {
		case run.panicked:
			return errRollback
		case x.released.Load(), m.cfg.Release != nil && m.cfg.Release(rec.finalStatus()):
			run.release = true
			return errRollback
		case rec.tooLarge, rec.upgraded:
			run.tooLarge = true
			return errRollback
		}
		return m.store.Complete(ctx, skey, run.rec.Token, rec.response(), m.cfg.TTL)
	})
	switch {
	case run.panicked:
		m.decide(r, DecisionReleased)
		panic(run.panicVal)
	case run.called && (run.err != nil || !run.reserved):
		restore()
		m.answerTaken(w, r, key, fp, run.rec, run.err)
	case run.release:
		run.x.rec.send()
		m.decide(r, DecisionReleased)
	case run.tooLarge:
		restore()
		m.refuse(w, r, DecisionNotCommitted, http.StatusInternalServerError, ProblemNotCommitted,
			"the response could not be stored, so nothing was done; the request may be sent again", 0)
	case err != nil:
		m.logFailure(r, "idempotency: transaction failed", key, err)
		restore()
		m.refuse(w, r, DecisionStoreError, http.StatusServiceUnavailable, ProblemUnavailable,
			"the idempotency store is unavailable; the request was not processed", m.cfg.RetryAfter)
	default:
		run.x.rec.send()
		m.decide(r, DecisionExecuted)
	}
}

// runCatching runs the handler, recording a panic in run instead of
// letting it unwind through the store's transaction.
func (m *middleware) runCatching(run *txRun, in *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			run.panicked, run.panicVal = true, p
		}
	}()
	m.next.ServeHTTP(&run.x.rec, in)
}

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
)

// ErrNoKey is returned by Phase and AtomicPhase outside the handler of a
// keyed request: there is no key to keep recovery points under.
var ErrNoKey = errors.New("pgstore: no idempotency key in the context")

// Phase runs the foreign phase name of the request whose handler ctx
// belongs to: if an earlier run of the handler for its key recorded the
// phase, Phase returns the recorded result without calling fn; otherwise
// it calls fn and, when fn succeeds, records its result at once (in a
// statement of its own, outside the request's transaction, so that a
// rollback does not forget a call that happened) and returns it. When fn
// fails nothing is recorded and its error is returned.
//
// fn should make its call with the key idempotency.DerivedKey(ctx, name),
// so that a call whose answer was lost before it was recorded is
// deduplicated by the other service when the next run makes it again.
// Two runs of one key at once cannot both get this far in the
// transactional mode (the first holds the key); in the plain mode a run
// whose lease ended may overlap its successor, and then the result
// recorded first wins and both return it.
//
// In the transactional mode the request's transaction holds a connection
// of the pool, so Phase never asks that pool for a second one (as many
// requests as the pool has connections, each waiting for another, would
// wait for ever): it reads the recovery point on the transaction's own
// connection, and records the result on a connection of a small pool of
// its own (Config.PhaseConns), made from the pool's configuration on
// first use, which holds a connection for one statement at a time and so
// cannot starve. Every statement is bounded by Config.Timeout.
func (s *Store) Phase(ctx context.Context, name string, fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	scope, key, err := s.phaseKey(ctx)
	if err != nil {
		return nil, err
	}
	var read, write queryer = s.pool, s.pool
	if t := s.txOf(ctx); t != nil {
		if err := t.ready(ctx); err != nil {
			return nil, fmt.Errorf("pgstore: phase %q: %w", name, err)
		}
		pp, err := s.phasePool()
		if err != nil {
			return nil, fmt.Errorf("pgstore: phase %q: %w", name, err)
		}
		read, write = t, pp
	}
	rctx, cancel := s.bound(ctx)
	res, found, err := s.recovery(rctx, read, scope, key, name)
	cancel()
	if err != nil || found {
		return res, err
	}
	res, err = fn(ctx)
	if err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	res, _, err = s.record(bctx, write, scope, key, name, res)
	return res, err
}

// phasePool returns the pool Phase records on in the transactional mode,
// making it on first use: s.pool's configuration with at most
// s.phaseConns connections, none kept open when idle.
func (s *Store) phasePool() (*pgxpool.Pool, error) {
	s.phaseMu.Lock()
	defer s.phaseMu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case s.phases != nil:
		return s.phases, nil
	}
	cfg := s.pool.Config()
	cfg.MaxConns, cfg.MinConns, cfg.MinIdleConns = s.phaseConns, 0, 0
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	s.phases = p
	return p, nil
}

// Close closes the connections Phase opened of its own (see
// Config.PhaseConns), waiting for those in use; the pool given to New is
// the caller's to close. After Close, Phase returns ErrClosed in the
// transactional mode; every other operation works as before. Close is
// safe to call more than once, and on a Store Phase never used (it then
// does nothing).
func (s *Store) Close() {
	s.phaseMu.Lock()
	p := s.phases
	s.phases, s.closed = nil, true
	s.phaseMu.Unlock()
	if p != nil {
		p.Close()
	}
}

// ErrClosed is returned by Phase, in the transactional mode, after Close.
var ErrClosed = errors.New("pgstore: store closed")

// AtomicPhase runs the local phase name of the request whose handler ctx
// belongs to: if an earlier run of the handler for its key recorded the
// phase, it returns the recorded result without calling fn; otherwise it
// calls fn with a transaction and records fn's result in that same
// transaction, so that fn's writes and the recovery point commit together
// or not at all. The transaction is the request's own in the
// transactional mode (the phase then commits with the response), and one
// of the phase's own, committed before AtomicPhase returns, otherwise.
// When fn fails nothing is recorded: the phase's own transaction is
// rolled back, and in the transactional mode the request's transaction is
// left as fn's statements left it.
func (s *Store) AtomicPhase(ctx context.Context, name string, fn func(ctx context.Context, tx *Txn) ([]byte, error)) ([]byte, error) {
	scope, key, err := s.phaseKey(ctx)
	if err != nil {
		return nil, err
	}
	if t := s.txOf(ctx); t != nil {
		if err := t.ready(ctx); err != nil {
			return nil, fmt.Errorf("pgstore: phase %q: %w", name, err)
		}
		rctx, cancel := s.bound(ctx)
		res, found, err := s.recovery(rctx, t, scope, key, name)
		cancel()
		if err != nil || found {
			return res, err
		}
		res, err = fn(ctx, t)
		if err != nil {
			return nil, err
		}
		rctx, cancel = s.bound(ctx)
		defer cancel()
		res, ours, err := s.record(rctx, t, scope, key, name, res)
		if err == nil && !ours {
			// fn's writes are in the request's transaction, which a
			// failing handler rolls back.
			return nil, fmt.Errorf("pgstore: phase %q: %w", name, errPhaseRace)
		}
		return res, err
	}
	t := &Txn{s: s}
	defer t.close()
	tctx := context.WithValue(ctx, txCtxKey{}, t)
	rctx, cancel := s.bound(tctx)
	defer cancel()
	if err := t.ready(rctx); err != nil {
		return nil, fmt.Errorf("pgstore: phase %q: %w", name, err)
	}
	if res, found, err := s.recovery(rctx, t, scope, key, name); err != nil || found {
		t.rollback(ctx)
		return res, err
	}
	ok := false
	defer func() {
		if !ok { // fn panicked; the panic continues
			t.rollback(ctx)
		}
	}()
	res, err := fn(tctx, t)
	ok = true
	if err != nil {
		t.rollback(ctx)
		return nil, err
	}
	rctx, cancel = s.bound(tctx)
	defer cancel()
	res, ours, err := s.record(rctx, t, scope, key, name, res)
	if err != nil || !ours {
		// Not ours: a run that got there first recorded the phase, and
		// its writes are the phase's; these are undone.
		t.rollback(ctx)
		return res, err
	}
	if err := t.commit(ctx); err != nil {
		return nil, fmt.Errorf("pgstore: phase %q: %w", name, err)
	}
	return res, nil
}

// phaseKey returns the scope and key of the request whose handler ctx
// belongs to.
func (s *Store) phaseKey(ctx context.Context) ([]byte, string, error) {
	if s.pool == nil {
		return nil, "", ErrNilPool
	}
	skey, ok := idempotency.StoreKeyOf(ctx)
	if !ok {
		return nil, "", ErrNoKey
	}
	return splitKey(skey)
}

// recovery reads the recorded result of phase name, if any.
func (s *Store) recovery(ctx context.Context, q queryer, scope []byte, key, name string) ([]byte, bool, error) {
	var res []byte
	err := q.QueryRow(ctx, s.sql.phaseGet, scope, key, name).Scan(&res)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("pgstore: phase %q: %w", name, err)
	}
	if res == nil {
		res = []byte{}
	}
	return res, true, nil
}

// record records res as the result of phase name and returns it, with
// ours true; or, when a run that got there first recorded the phase
// meanwhile, returns that run's result, with ours false.
func (s *Store) record(ctx context.Context, q queryer, scope []byte, key, name string, res []byte) (_ []byte, ours bool, _ error) {
	if res == nil {
		res = []byte{}
	}
	var one int
	err := q.QueryRow(ctx, s.sql.phasePut, scope, key, name, res, s.phaseTTL.Microseconds()).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		got, _, err := s.recovery(ctx, q, scope, key, name)
		return got, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("pgstore: phase %q: %w", name, err)
	}
	return res, true, nil
}

// errPhaseRace: a local phase in the request's transaction found its
// recovery point recorded by another run meanwhile.
var errPhaseRace = errors.New("recorded meanwhile by another run of the same key")

// Package redisstore is an idempotency.Store kept in Redis, so that every
// server behind a load balancer sees the same keys: a retried POST that
// lands on another server is still replayed, not run twice.
//
// It lives in its own module so that the Redis client is a dependency only
// of programs that use it. Use it with the middleware:
//
//	client := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	defer client.Close()
//	store := redisstore.New(client, redisstore.Config{})
//	handler := idempotency.Middleware(store, idempotency.MiddlewareConfig{})(mux)
//
// Each operation is one Lua script, atomic in Redis. A record is one string
// value whose Redis expiry is the lease while in flight and the TTL once
// completed, so expiry costs nothing in the process: Redis does it.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultPrefix           = "rebound:idem:"
	DefaultMaxResponseBytes = 4 << 20
)

// ErrNilClient is returned by every operation of a Store made with a nil
// client.
var ErrNilClient = errors.New("redisstore: nil Redis client")

// ErrInvalidStatus is returned by Complete for a response whose status is
// not a three-digit HTTP status, which could not be replayed.
var ErrInvalidStatus = errors.New("redisstore: invalid response status")

// Config configures a Store. The zero value is the documented default of
// every field.
type Config struct {
	// Prefix is put before every key the store writes, to keep its keys
	// apart from the rest of the database. Empty means "rebound:idem:".
	Prefix string

	// MaxResponseBytes bounds the encoded size of a stored response
	// (headers and body). A larger response is stored as NotReplayable,
	// without its headers and body, which keeps its key used: a repeat
	// gets 410 Gone rather than a second run, as with the memory store.
	// Zero or negative means 4 MiB. The middleware's own
	// MaxResponseBytes (1 MiB by default) usually applies first.
	MaxResponseBytes int
}

// Store is an idempotency.Store in Redis. It is safe for concurrent use,
// and any number of processes may share one database: every operation is a
// single Lua script, so checking a token and writing happen in one atomic
// step on the server.
//
// Reserve creates the key only if it is absent, with the lease as its
// Redis expiry (PX); Renew moves that expiry while the token matches.
// Complete replaces an in-flight record that still has
// the caller's token with the response, expiring after the TTL; Release
// deletes it. Both return idempotency.ErrLeaseLost when the key is gone or
// holds another token or a response. Expiry is Redis's own, so the store
// has no goroutine and nothing to close; Record.Expires is this process's
// clock plus the key's remaining time to live in Redis.
//
// Tokens are random non-zero 64-bit numbers (math/rand/v2), not a counter
// key, so that each script touches one key and works on Redis Cluster. Two
// reservations of one key share a token with probability 2⁻⁶⁴.
//
// Errors from Redis are returned wrapped, with the operation's name (the
// middleware answers 503 when Reserve fails). When Redis refuses a write
// for lack of memory ("OOM": maxmemory with the noeviction policy), the
// error also matches idempotency.ErrStoreFull. The store evicts nothing
// itself: Redis's maxmemory policy decides, and a volatile-* or allkeys-*
// policy may evict an in-flight reservation, letting a concurrent repeat
// run; use noeviction, or a database of its own, where that matters.
// A script whose reply is lost (the connection fails after Redis ran it)
// is handled as go-redis retries it: a Reserve that finds its own
// reservation has reserved, a Complete that finds its own response has
// completed. When Reserve fails that way without a retry, it deletes its
// reservation, if it made one, before returning the error, so the key is
// not held for a lease by a request that was refused.
// The store does not bound its own time: the client's timeouts do
// (go-redis: DialTimeout 5 s, ReadTimeout and WriteTimeout 3 s, a few
// retries, by default), and so does the context when the client has
// ContextTimeoutEnabled.
//
// Create one with New; the zero value is not usable.
type Store struct {
	client      redis.UniversalClient
	prefix      string
	maxResponse int
}

var _ idempotency.Store = (*Store)(nil)

// New returns a Store that keeps its records in client's database. The
// caller owns client and closes it. A nil client gives a Store whose
// every operation returns ErrNilClient.
func New(client redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if isNil(client) {
		client = nil
	}
	return &Store{client: client, prefix: cfg.Prefix, maxResponse: cfg.MaxResponseBytes}
}

// isNil reports whether c is nil or a nil pointer of a go-redis client type.
func isNil(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	case *redis.Ring:
		return c == nil
	}
	return false
}

// Reserve implements idempotency.Store. A lease of zero or less reserves
// nothing in Redis: the reservation has expired as soon as it is made.
func (s *Store) Reserve(ctx context.Context, key string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	if s.client == nil {
		return idempotency.Record{}, false, ErrNilClient
	}
	token := newToken()
	now := time.Now()
	reply, err := reserveScript.Run(ctx, s.client, []string{s.prefix + key},
		encodeInFlight(token, fp), millis(lease)).Result()
	if err != nil {
		if maybeRan(err) {
			// The script may have reserved the key before the reply was
			// lost; nobody else knows the token, so take it back rather
			// than hold the key for a lease while the caller answers 503.
			_ = releaseScript.Run(context.WithoutCancel(ctx), s.client, []string{s.prefix + key},
				recordPrefix(stateInFlight, token)).Err()
		}
		return idempotency.Record{}, false, s.fail("reserve", err)
	}
	if n, ok := reply.(int64); ok && n == 1 {
		return idempotency.Record{Fingerprint: fp, Token: token, Expires: now.Add(lease)}, true, nil
	}
	rec, err := parseExisting(reply, now)
	if err != nil {
		return idempotency.Record{}, false, fmt.Errorf("redisstore: reserve: %w", err)
	}
	if rec.Token == token && rec.InFlight() && rec.Fingerprint == fp {
		// This call's own reservation: go-redis ran the script again after
		// the first run's reply was lost. Tokens are random, so no other
		// reservation has this one.
		return rec, true, nil
	}
	return rec, false, nil
}

// maybeRan reports whether a command that failed with err may still have
// run in Redis: its connection failed after the command was sent, rather
// than Redis answering with an error or the command never leaving.
func maybeRan(err error) bool {
	var rerr redis.Error
	var nerr *net.OpError
	switch {
	case errors.As(err, &rerr),
		errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.As(err, &nerr) && nerr.Op == "dial":
		return false
	}
	return true
}

// Complete implements idempotency.Store. A nil resp is stored as a
// NotReplayable 200; a ttl of zero or less completes the reservation and
// deletes the key at once.
func (s *Store) Complete(ctx context.Context, key string, token uint64, resp *idempotency.Response, ttl time.Duration) error {
	if s.client == nil {
		return ErrNilClient
	}
	if resp == nil {
		resp = &idempotency.Response{Status: 200, NotReplayable: true}
	}
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("%w: %d", ErrInvalidStatus, resp.Status)
	}
	if encodedSize(resp) > s.maxResponse {
		resp = &idempotency.Response{Status: resp.Status, NotReplayable: true, OutcomeUnknown: resp.OutcomeUnknown}
	}
	n, err := completeScript.Run(ctx, s.client, []string{s.prefix + key},
		recordPrefix(stateInFlight, token), recordPrefix(stateCompleted, token),
		encodeResponse(resp), millis(ttl)).Int64()
	if err != nil {
		return s.fail("complete", err)
	}
	if n != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Renew implements idempotency.Store. A lease of zero or less ends the
// reservation at once.
func (s *Store) Renew(ctx context.Context, key string, token uint64, lease time.Duration) error {
	if s.client == nil {
		return ErrNilClient
	}
	n, err := renewScript.Run(ctx, s.client, []string{s.prefix + key},
		recordPrefix(stateInFlight, token), millis(lease)).Int64()
	if err != nil {
		return s.fail("renew", err)
	}
	if n != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Release implements idempotency.Store.
func (s *Store) Release(ctx context.Context, key string, token uint64) error {
	if s.client == nil {
		return ErrNilClient
	}
	n, err := releaseScript.Run(ctx, s.client, []string{s.prefix + key},
		recordPrefix(stateInFlight, token)).Int64()
	if err != nil {
		return s.fail("release", err)
	}
	if n != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Lookup implements idempotency.Store.
func (s *Store) Lookup(ctx context.Context, key string) (idempotency.Record, bool, error) {
	if s.client == nil {
		return idempotency.Record{}, false, ErrNilClient
	}
	now := time.Now()
	reply, err := lookupScript.Run(ctx, s.client, []string{s.prefix + key}).Result()
	if err != nil {
		return idempotency.Record{}, false, s.fail("lookup", err)
	}
	if n, ok := reply.(int64); ok && n == 0 {
		return idempotency.Record{}, false, nil
	}
	rec, err := parseExisting(reply, now)
	if err != nil {
		return idempotency.Record{}, false, fmt.Errorf("redisstore: lookup: %w", err)
	}
	return rec, true, nil
}

// fail wraps an error from Redis with the operation's name; a refusal for
// lack of memory also matches idempotency.ErrStoreFull.
func (s *Store) fail(op string, err error) error {
	if redis.HasErrorPrefix(err, "OOM") {
		return fmt.Errorf("redisstore: %s: %w: %w", op, idempotency.ErrStoreFull, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// newToken returns a random non-zero token.
func newToken() uint64 {
	for {
		if t := rand.Uint64(); t != 0 {
			return t
		}
	}
}

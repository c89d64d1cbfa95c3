package redisstore_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Faults between the store and Redis: a script that ran in Redis but whose
// reply never came back, the way a connection reset or a read timeout
// loses it. go-redis then runs the script again (MaxRetries) or returns
// the error.

// replyDropper is a TCP proxy in front of a Redis server. Once armed, it
// forwards the next script command (EVAL or EVALSHA) to Redis but, instead
// of passing Redis's reply back, closes the connection: the script has run
// and the client cannot know it. A NOSCRIPT reply (go-redis then sends the
// script with EVAL) is passed on. It then disarms itself.
type replyDropper struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int32
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &replyDropper{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *replyDropper) addr() string { return p.ln.Addr().String() }

func (p *replyDropper) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		var pending atomic.Bool // a script command was forwarded while armed
		p.wg.Add(2)
		go func() { // client to Redis
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.armed.Load() && bytes.Contains(bytes.ToUpper(buf[:n]), []byte("EVAL")) {
						pending.Store(true)
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					s.Close()
					return
				}
			}
		}()
		go func() { // Redis to client
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					if pending.Load() && !bytes.HasPrefix(buf[:n], []byte("-NOSCRIPT")) {
						p.armed.Store(false)
						p.dropped.Add(1)
						c.Close()
						s.Close()
						return
					}
					pending.Store(false)
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					c.Close()
					return
				}
			}
		}()
	}
}

// lostReplyStore returns a store whose client talks through a
// replyDropper to a fresh miniredis or, when REBOUND_REDIS_ADDR is set and
// real is true, to that Redis (under a prefix of t's own), with go-redis
// retrying maxRetries times (-1: never).
func lostReplyStore(t *testing.T, real bool, maxRetries int) (*redisstore.Store, *replyDropper) {
	target, prefix := "", fmt.Sprintf("rebound:test:%x:", rand.Uint64())
	if real {
		if target = os.Getenv(envAddr); target == "" {
			t.Skip(envAddr + " not set")
		}
		direct := newClient(t, target)
		t.Cleanup(func() { _ = direct.Del(ctx, prefix+"k").Err() })
	} else {
		target = miniredis.RunT(t).Addr()
	}
	p := newReplyDropper(t, target)
	c := redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: maxRetries, MinRetryBackoff: -1})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(ctx).Err())
	return redisstore.New(c, redisstore.Config{Prefix: prefix}), p
}

// eachTarget runs f against miniredis and, when REBOUND_REDIS_ADDR is set,
// a real Redis.
func eachTarget(t *testing.T, f func(t *testing.T, real bool)) {
	t.Run("miniredis", func(t *testing.T) { f(t, false) })
	t.Run("redis", func(t *testing.T) { f(t, true) })
}

func TestReserveReplyLost(t *testing.T) {
	eachTarget(t, testReserveReplyLost)
}

func testReserveReplyLost(t *testing.T, real bool) {
	t.Run("retried by go-redis", func(t *testing.T) {
		s, p := lostReplyStore(t, real, 3)
		p.armed.Store(true)
		rec, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		require.EqualValues(t, 1, p.dropped.Load(), "the first reply was lost and the script ran again")
		assert.True(t, reserved, "the reservation the lost reply made is this call's own")
		assert.True(t, rec.InFlight())
		require.NoError(t, s.Complete(ctx, "k", rec.Token, okResponse("x"), time.Hour), "and it holds the key")
	})
	t.Run("not retried", func(t *testing.T) {
		s, p := lostReplyStore(t, real, -1)
		p.armed.Store(true)
		_, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.Error(t, err, "the reply was lost")
		require.EqualValues(t, 1, p.dropped.Load())
		rec, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		assert.True(t, reserved, "the reservation nobody knows the token of was taken back; the retry runs, not 409 for a lease")
		assert.True(t, rec.InFlight())
	})
}

func TestCompleteReplyLost(t *testing.T) {
	eachTarget(t, testCompleteReplyLost)
}

func testCompleteReplyLost(t *testing.T, real bool) {
	s, p := lostReplyStore(t, real, 3)
	rec, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
	require.NoError(t, err)
	require.True(t, reserved)
	p.armed.Store(true)
	err = s.Complete(ctx, "k", rec.Token, okResponse("done"), time.Hour)
	require.EqualValues(t, 1, p.dropped.Load(), "the first reply was lost and the script ran again")
	assert.NoError(t, err, "the response was stored, by this very call: no lost lease")
	got, found, err := s.Lookup(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.False(t, got.InFlight())
	assert.Equal(t, "done", string(got.Response.Body))
	assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token+1, okResponse("other"), time.Hour), idempotency.ErrLeaseLost,
		"another token still loses")
}

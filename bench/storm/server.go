package storm

import (
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Defaults of ServerConfig's zero fields.
const (
	DefaultWorkers = 10
	DefaultService = 50 * time.Millisecond
	// DefaultQueueTime is the longest a full queue makes a request wait,
	// in units of the server's own time: the queue holds
	// QueueTime/Service*Workers requests (800 with the defaults). It is
	// twice DefaultDeadline, so a full queue serves only requests whose
	// client has given up: the wasted work that sustains an overload.
	DefaultQueueTime = 4 * time.Second
)

// ServerConfig configures a Server. The zero value is 10 workers, a mean
// service time of 50 ms drawn from an exponential distribution (capacity
// 200 requests per second), a queue of 4 s of work (800 requests) and
// 503s without Retry-After.
type ServerConfig struct {
	// Workers is how many requests are served at once. Zero means 10.
	Workers int
	// Service is the mean service time of one request. Zero means 50 ms.
	Service time.Duration
	// FixedService makes every service time exactly Service (M/D/c)
	// instead of exponential (M/M/c, the zero value).
	FixedService bool
	// QueueLimit is how many requests may wait for a worker; one more is
	// answered 503 at once. Zero means DefaultQueueTime of work
	// (QueueTime/Service*Workers); negative means no queue at all.
	QueueLimit int
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// at least 1) on every 503 of a full queue. Zero sends none.
	RetryAfter time.Duration
	// FailShare is the share of attempts answered 503 at once, at random,
	// whatever the load: a flaky server, for the amplification study.
	// Zero fails none.
	FailShare float64
	// Seed seeds the service times and the random failures. Zero means 1.
	Seed uint64
	// SkipGone makes the server drop, unserved, a waiting request whose
	// client has gone when its turn comes, as a server can that knows
	// the caller's deadline (gRPC's grpc-timeout header) or checks the
	// connection before work starts. The zero value serves it anyway,
	// as wasted work: the sustaining effect of the model.
	SkipGone bool
	// Next, when non-nil, makes the server a middle layer: after its own
	// service time, a worker calls Next (the layer below, through the
	// layer's own client chain) and stays busy until it returns; a false
	// result turns the answer into a 502 with the header Next returns.
	// Nil serves alone.
	Next func() (ok bool, header http.Header)
}

func (c ServerConfig) normalized() ServerConfig {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Service <= 0 {
		c.Service = DefaultService
	}
	if c.QueueLimit == 0 {
		c.QueueLimit = int(int64(DefaultQueueTime) * int64(c.Workers) / int64(c.Service))
	}
	if c.QueueLimit < 0 {
		c.QueueLimit = 0
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Capacity is the requests per second the configured server completes
// when every worker is busy: Workers / Service.
func (c ServerConfig) Capacity() float64 {
	c = c.normalized()
	return float64(c.Workers) / c.Service.Seconds()
}

// Mode is the state of a Server's fault (its trigger).
type Mode int

const (
	// Healthy is the server as configured.
	Healthy Mode = iota
	// HalfCapacity serves with half the workers (rounded up); requests
	// in service finish, and no new one starts while more than half are
	// busy.
	HalfCapacity
	// Outage refuses every connection, and the requests waiting or in
	// service when it starts end with a connection reset: the server's
	// process is gone, and so is its queue.
	Outage
	// SlowService multiplies by 10 the service time of every request
	// that starts while it lasts (a slow dependency holding the workers).
	SlowService
)

// String names the mode the way the grid's tables do.
func (m Mode) String() string {
	switch m {
	case Healthy:
		return "healthy"
	case HalfCapacity:
		return "capacity/2"
	case Outage:
		return "outage"
	case SlowService:
		return "latency×10"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ErrRefused is the error of an attempt that reaches a server in Outage,
// a dial error as net/http reports ECONNREFUSED, so every library
// classifies it as "not sent" and retryable.
var ErrRefused error = &net.OpError{Op: "dial", Net: "tcp",
	Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}

// ErrReset is the error of an attempt whose server went down while the
// attempt waited or was served.
var ErrReset error = &net.OpError{Op: "read", Net: "tcp",
	Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}

// Server is a model of one overloaded service, used as an in-memory
// http.RoundTripper: Workers serve requests one at a time each, for a
// service time drawn at the start of service; a request that finds every
// worker busy waits in a FIFO queue of QueueLimit places, and one that
// finds the queue full is answered 503 at once (with Retry-After when
// configured). A request whose client gives up (its context ends) while it
// waits or is served stays where it is: it is still served when its turn
// comes, and that service is counted as wasted work. That is what real
// servers do when they cannot see that the client has gone, and it is
// the effect that keeps an overloaded server overloaded: a queue longer
// than the clients' deadline serves only requests nobody waits for.
//
// Without deadlines and with an unbounded queue the model is the M/M/c
// queue (exponential service) fed by whatever arrives; its tests check
// the utilisation and the mean wait against Erlang C.
//
// Time is the time package's: run it inside a testing/synctest bubble
// and a minute of load passes in milliseconds. Service completions are
// time.AfterFunc timers; the model starts no goroutine of its own. A
// Server is safe for concurrent use. The zero value is not usable: call
// NewServer.
type Server struct {
	cfg ServerConfig
	rec *Recorder // nil: nothing recorded

	mu      sync.Mutex
	rng     *rand.Rand
	mode    Mode
	workers int // workers available in the current mode
	busy    int
	queue   []*job // FIFO: queue[head:] waits
	head    int
	serving map[*job]*time.Timer

	// Integrals for the queueing checks, under mu.
	busySince time.Time
	busyArea  float64 // worker-seconds of service
	waitSum   time.Duration
	started   int64
}

// job is one attempt inside the server.
type job struct {
	arrived time.Time
	done    chan struct{}
	err     error // ErrReset when the server went down under it
	status  int
	header  http.Header // a middle layer's failure: its handler's header
	gone    bool        // the client gave up; under Server.mu
	due     time.Time   // the end of its service as scheduled; under Server.mu
}

// NewServer returns a healthy server configured by cfg, recording into
// rec when rec is non-nil.
func NewServer(cfg ServerConfig, rec *Recorder) *Server {
	cfg = cfg.normalized()
	return &Server{
		cfg:     cfg,
		rec:     rec,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		workers: cfg.Workers,
		serving: make(map[*job]*time.Timer),
	}
}

// Config returns the server's normalized configuration.
func (s *Server) Config() ServerConfig { return s.cfg }

// SetMode starts or ends a fault. Outage ends every request waiting or in
// service with ErrReset.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account(time.Now())
	s.mode = m
	s.workers = s.cfg.Workers
	if m == HalfCapacity {
		s.workers = (s.cfg.Workers + 1) / 2
	}
	if m == Outage {
		for j, t := range s.serving {
			t.Stop()
			s.endLocked(j, 0, ErrReset)
		}
		clear(s.serving)
		s.busy = 0
		for _, j := range s.queue[s.head:] {
			s.endLocked(j, 0, ErrReset)
		}
		s.queue, s.head = s.queue[:0], 0
	}
	s.startWaiting(time.Now())
}

// RoundTrip serves req as the model says, blocking (in virtual time)
// until the answer or the end of req's context.
func (s *Server) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	j, status, err := s.admit(time.Now())
	if err != nil {
		return nil, err
	}
	var header http.Header
	if j != nil {
		select {
		case <-j.done:
			status, err = j.status, j.err
			header = j.header
		case <-ctx.Done():
			s.mu.Lock()
			select {
			case <-j.done: // answered meanwhile: the answer is lost anyway
			default:
				j.gone = true
			}
			s.mu.Unlock()
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, err
		}
	}
	resp := &http.Response{
		Status:     strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode: status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{},
		Body:    http.NoBody,
		Request: req,
	}
	for k, v := range header {
		resp.Header[k] = v
	}
	if status == http.StatusServiceUnavailable && s.cfg.RetryAfter > 0 {
		secs := int64(math.Ceil(s.cfg.RetryAfter.Seconds()))
		resp.Header.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	return resp, nil
}

// admit places an arriving attempt: refused (an error), rejected with a
// 503 (a status and no job), or a job that will be answered on its done
// channel.
func (s *Server) admit(now time.Time) (*job, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec != nil {
		s.rec.attempt(now)
	}
	if s.mode == Outage {
		if s.rec != nil {
			s.rec.refused(now)
		}
		return nil, 0, ErrRefused
	}
	if s.cfg.FailShare > 0 && s.rng.Float64() < s.cfg.FailShare {
		if s.rec != nil {
			s.rec.rejected(now)
		}
		return nil, http.StatusServiceUnavailable, nil
	}
	j := &job{arrived: now, done: make(chan struct{})}
	switch {
	case s.busy < s.workers && s.head == len(s.queue):
		s.startLocked(j, now)
	case len(s.queue)-s.head < s.cfg.QueueLimit:
		s.queue = append(s.queue, j)
	default:
		if s.rec != nil {
			s.rec.rejected(now)
		}
		return nil, http.StatusServiceUnavailable, nil
	}
	return j, 0, nil
}

// startLocked gives j a worker from instant at (the end of the worker's
// previous service as scheduled, or now), not before j arrived. s.mu is
// held.
//
// Counting service from the scheduled end of the previous one, rather
// than from the moment its timer fired, keeps the capacity exact in real
// time too (the reality check, where timers fire late by a fraction of a
// millisecond and the drain of a backlog at ρ = 0.9 is ten times as
// sensitive as the capacity); in a bubble the two instants are the same.
func (s *Server) startLocked(j *job, at time.Time) {
	now := time.Now()
	if at.Before(j.arrived) {
		at = j.arrived
	}
	s.account(now)
	s.busy++
	s.started++
	s.waitSum += at.Sub(j.arrived)
	d := s.cfg.Service
	if !s.cfg.FixedService {
		d = time.Duration(s.rng.ExpFloat64() * float64(d))
	}
	if s.mode == SlowService {
		d *= 10
	}
	j.due = at.Add(d)
	s.serving[j] = time.AfterFunc(max(j.due.Sub(now), 0), func() {
		status := http.StatusOK
		if s.cfg.Next != nil {
			if ok, h := s.cfg.Next(); !ok {
				status = http.StatusBadGateway
				s.mu.Lock()
				j.header = h
				s.mu.Unlock()
			}
			s.mu.Lock()
			j.due = time.Now()
			s.mu.Unlock()
		}
		s.finish(j, status)
	})
}

// finish ends j's service and starts the next waiting requests.
func (s *Server) finish(j *job, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.serving[j]; !ok {
		return // the outage ended it
	}
	delete(s.serving, j)
	now := time.Now()
	s.account(now)
	s.busy--
	if s.rec != nil {
		s.rec.served(now, j.gone)
	}
	s.endLocked(j, status, nil)
	at := j.due
	if at.After(now) {
		at = now
	}
	s.startWaiting(at)
}

// startWaiting starts waiting requests while workers are free, their
// service counted from at. s.mu is held.
func (s *Server) startWaiting(at time.Time) {
	for s.busy < s.workers && s.head < len(s.queue) {
		j := s.queue[s.head]
		s.queue[s.head] = nil
		s.head++
		if s.cfg.SkipGone && j.gone {
			s.endLocked(j, http.StatusServiceUnavailable, nil)
			continue
		}
		s.startLocked(j, at)
	}
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head > 4096 && s.head > len(s.queue)/2 {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
}

// endLocked answers j. s.mu is held.
func (s *Server) endLocked(j *job, status int, err error) {
	j.status, j.err = status, err
	close(j.done)
}

// account adds the busy workers' time up to now to the utilisation
// integral. s.mu is held.
func (s *Server) account(now time.Time) {
	if !s.busySince.IsZero() {
		s.busyArea += float64(s.busy) * now.Sub(s.busySince).Seconds()
	}
	s.busySince = now
}

// idle reports whether no request waits or is served.
func (s *Server) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy == 0 && s.head == len(s.queue)
}

// QueueStats is what a Server measured for the queueing checks.
type QueueStats struct {
	// BusyWorkerSeconds is the integral of busy workers over time.
	BusyWorkerSeconds float64
	// Started is how many requests began service.
	Started int64
	// MeanWait is the mean time from arrival to the start of service.
	MeanWait time.Duration
	// Waiting is how many requests wait now.
	Waiting int
}

// Stats returns the queueing measurements so far.
func (s *Server) Stats() QueueStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account(time.Now())
	st := QueueStats{BusyWorkerSeconds: s.busyArea, Started: s.started, Waiting: len(s.queue) - s.head}
	if s.started > 0 {
		st.MeanWait = s.waitSum / time.Duration(s.started)
	}
	return st
}

// ResetStats zeroes the queueing measurements (after a warm-up).
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account(time.Now())
	s.busyArea, s.waitSum, s.started = 0, 0, 0
}

// Handler serves the model over HTTP, for the reality check: each request
// is one attempt, its context ends when the client goes away (as
// net/http's server sees a closed connection), and an attempt the model
// ends with an error (an outage) drops the connection.
func Handler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.RoundTrip(r)
		if err != nil {
			if r.Context().Err() != nil {
				return // the client is gone; nobody reads the answer
			}
			panic(http.ErrAbortHandler)
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
	})
}

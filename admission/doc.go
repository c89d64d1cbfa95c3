// Package admission decides when an attempt may go to a host: one state
// per host and credential, fed by every signal the server gives about the
// pace it accepts, with a FIFO of waiting turns.
//
// A rate limiter that refuses the excess is alive: it admits a steady
// number of requests a second and asks the rest to come back later. The
// way to use its capacity is to send at the rate it admits, not to stop
// sending. A server that refuses everything, with a wait hint, is asking
// for a pause. Admission tells the two apart from what the key's own
// traffic shows, and keeps one state for both:
//
//	paused until  no turn before this instant (a wait hint while nothing
//	              was admitted, or a quota with nothing left)
//	rate          turns per second (learned from the server's throttling,
//	              or its announced quota); zero means no limit
//	next          the earliest instant of the next turn (virtual scheduling)
//	queue         the calls waiting for a turn, first come first served
//	inflight      turns given and not yet reported
//
// Every attempt (first, retry, hedge) takes a Turn before it is sent and
// reports what came back with Turn.Done; a turn that was not used (a
// deadline refusal, a cancelled wait, a gate's refusal, a hedge not sent, a
// panic in the transport below) is given back with Turn.Cancel, and the next
// waiter moves up at once. A key that has never been throttled and never
// announced a quota has no state: its Take is one atomic load.
//
// # Signals
//
//   - A throttle is a 429, or a retryable status (503, 500, ...) that
//     carries a wait hint: Retry-After (seconds or HTTP-date), RateLimit
//     with r=0, RateLimit-Reset, X-RateLimit-Reset (see classify.WaitHint;
//     epoch resets are measured against the response's Date).
//   - A quota is what RateLimit / RateLimit-Policy (IETF draft, with its
//     partition key pk ignored: the key is ours), the older RateLimit-*
//     headers or X-RateLimit-* announce: r requests left for t seconds.
//   - Everything else that came back with a response is admitted.
//
// # Pause or pace
//
// One throttle is not a pattern: the throttle that makes a key's state
// (and any other answer to an attempt sent before the key had one) delays
// only its own call; a burst under a limit meets the odd 429. A later
// throttle with a hint pauses the key until the hint ends only when the
// key's recent traffic (the last second) shows nothing admitted: the
// server is refusing everything (a state younger than that second does
// not know what the host admitted just before its first throttle, so
// there it takes three throttles in a row). When some requests were
// admitted, the server is a limiter refusing the excess, and once a tenth
// of the key's attempts (of at least ten) are throttled the throttle
// lowers the key's pace instead; the
// call that received the hint still waits for it (the retry loop does
// that), so no attempt ever goes before its own hint. A throttle scoped to
// the host (a 5xx with a hint: "unavailable") pauses every credential of
// the host; a 429 or a quota is scoped to the credential (rate limits are
// almost always per API key), so one tenant's 429 never slows another. A
// pause ends early at the first admitted response.
//
// The first pace is what the server admitted over the key's short history,
// and probes up (doubling every 200 ms) until the next throttle, as TCP's
// slow start does. After that the pace follows the CUBIC window curve (RFC
// 9438), as the AWS SDKs' adaptive retry mode does, relative to the rate:
// on a throttle at t₀ the pace falls to β·Rmax (β = 0.8, Rmax the pace in
// force), then climbs R = Rmax·(1 + C·(t − t₀ − K)³) (C = 0.01,
// K = ∛((1−β)/C) = 2.7 s at any rate), never below half the rate the key
// was admitted at, and capped at 1.5 times the rate callers ask for
// (retries and queued calls included). One cut per round: a throttle of a
// turn given before the last cut, or within 200 ms after it, does not cut
// again. A pace with calls waiting that meets no throttle for 4 s, while
// calls arrive faster than it lets them go, probes again (the limit may be
// gone). A key that is not throttled for 10 s
// while its pace is 1.5 times what callers ask goes back to no limit. An
// announced quota sets the pace to what is left over the time left (never
// more than the learned pace), with a tenth of it allowed at once, its
// reset taken as the earliest seen in its window (servers round it up to
// whole seconds); a quota of zero pauses the key until its reset.
//
// After a pause the queue is released at the rate the key was admitting
// before it (or twice the rate callers ask, at least 10/s, when it never
// admitted anything), never all at once.
//
// # Deadlines and refusals
//
// A turn's wait is known when it is asked for: the pause, the next turn and
// the turns of the calls ahead of it in the queue. When that wait ends
// after the call's deadline, or exceeds MaxWait, Take refuses at once,
// without queueing, with a *RefusedError naming what limited the key: the
// server's wait hint (ErrHint), the server's quota (ErrQuota) or
// rebound's own learned pace (ErrPace). All three match
// classify.ErrNotSent.
//
// # Memory
//
// At most Config.MaxKeys states (4,096 by default: a process talking to
// more throttling hosts at once is rare, and each state is a few hundred
// bytes). A state idle for a minute, with nothing queued, in flight or
// paused, is dropped; a full table evicts the idlest such state; a key
// seen again after that starts fresh.
//
// # Why a package the loop calls, not a gate link
//
// A gate between the loop and the budget sees one attempt at a time and can
// only send or refuse it. Admission must do more: make the retry of the call
// that received a hint wait for it, hand the caller the previous attempt's
// response when a turn does not fit its deadline, and give a turn back when
// the budget or the breaker refuses the attempt after admission let it go.
// The loop (package transport) owns all three, so it calls Take and Done
// around every attempt it sends.
package admission

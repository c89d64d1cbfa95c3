// Package storm is a fleet-scale simulator of retry storms: real client
// libraries (a plain http.Client, a naive retry loop, go-retryablehttp,
// failsafe-go and rebound), one chain per client process, in front of an
// in-memory model of an overloadable server, all in virtual time
// (testing/synctest), so that ten thousand clients and a minute and a
// half of load run in a second or so of real time.
//
// The model (Server) has Workers serving one request at a time for a
// service time drawn at the start of service (exponential by default),
// a FIFO queue of QueueLimit places, 503 at once when the queue is full
// (with Retry-After if configured), and no way to see that a client has
// gone: a request whose client gave up is still served when its turn
// comes, as wasted work. Its utilisation and mean wait match M/M/c
// (Erlang C) within 5 % at ρ = 0.5 to 0.9 (TestServerMatchesMMc).
//
// A Cell sends open-loop Poisson calls at ρ times the server's capacity,
// spread over N processes, each call bounded by a deadline; after a
// warm-up it applies a trigger (capacity halved, a full outage, or
// service ten times slower) for 10 s, removes it, and measures the
// recovery time (from the removal until the share of calls that succeed
// is back to 95 % of what it was), "metastable" when that has not
// happened 60 s after, the amplification (server attempts per call)
// during and after, the wasted work and the attempts the fleet sends
// while its clients refuse calls locally (open circuits).
//
// Run must be called in a synctest bubble, which only a test can open:
// there is no command. make storm runs TestStormGrid over the whole grid
// (ρ × N × trigger × library) and writes docs/storm/; TestStormSmall runs
// a small corner with every go test and asserts the bounds that hold.
package storm

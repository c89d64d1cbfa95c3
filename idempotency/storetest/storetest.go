// Package storetest is a conformance suite for idempotency.Store
// implementations: the semantics the middleware relies on for one
// execution per key, checked the same way against every store.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend {
//			return storetest.Backend{Store: newStore(t)}
//		})
//	}
//
// It covers reservation (one winner among concurrent callers), fencing
// (only the current token renews, completes or releases), renewal (never
// of a completed record), completion (the response as stored, with
// NotReplayable and OutcomeUnknown), release, lookup, and, when the
// backend can move its clock, lease and TTL expiry: a renewed lease
// outlives the original one, a stale holder is refused after its key was
// reserved again, and a completed record lives until its TTL.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
)

// Backend is a store under test, empty, with what the suite needs to
// know about its clock. The zero value is not usable: Store must be set.
type Backend struct {
	// Store is the store under test. Each test gets its own Backend, and
	// expects no keys in it.
	Store idempotency.Store

	// VirtualTime reports that the store reads time.Now (MemoryStore):
	// the suite then runs each test, and calls the Backend's constructor,
	// inside a testing/synctest bubble, and moves the clock with
	// time.Sleep. Set it from the constructor's return; the suite asks
	// the constructor once outside a bubble to learn it.
	VirtualTime bool

	// Advance, when VirtualTime is false, moves the store's clock forward
	// by d (miniredis's FastForward, say). Nil means the clock cannot be
	// moved (a real server), and the tests that need it are skipped.
	Advance func(d time.Duration)
}

// advance moves b's clock by d, reporting false when it cannot.
func (b Backend) advance(d time.Duration) bool {
	switch {
	case b.VirtualTime:
		time.Sleep(d)
	case b.Advance != nil:
		b.Advance(d)
	default:
		return false
	}
	return true
}

// needClock skips t when b cannot move its clock.
func needClock(t *testing.T, b Backend) {
	t.Helper()
	if !b.VirtualTime && b.Advance == nil {
		t.Skip("the store's clock cannot be moved")
	}
}

var ctx = context.Background()

// Lease and TTL the tests use; long enough that real time passing during
// a test never ends them.
const (
	lease = time.Minute
	ttl   = time.Hour
)

// Run runs the suite against the stores newBackend returns, one per test.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	tests := []struct {
		name string
		f    func(t *testing.T, b Backend)
	}{
		{"ReserveFree", testReserveFree},
		{"ReserveTaken", testReserveTaken},
		{"OneWinner", testOneWinner},
		{"Complete", testComplete},
		{"Responses", testResponses},
		{"Release", testRelease},
		{"Renew", testRenew},
		{"Keys", testKeys},
		{"LeaseExpiry", testLeaseExpiry},
		{"RenewOutlivesLease", testRenewOutlivesLease},
		{"StaleHolder", testStaleHolder},
		{"TTL", testTTL},
	}
	probe := newBackend(t)
	virtual := probe.VirtualTime
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if virtual {
				synctest.Test(t, func(t *testing.T) { tt.f(t, newBackend(t)) })
				return
			}
			tt.f(t, newBackend(t))
		})
	}
}

func fp(b byte) idempotency.Fingerprint { return idempotency.Fingerprint{b, 0xfe, b} }

// reserve reserves key, which must be free, and returns its record.
func reserve(t *testing.T, s idempotency.Store, key string) idempotency.Record {
	t.Helper()
	rec, reserved, err := s.Reserve(ctx, key, fp(1), lease)
	if err != nil || !reserved {
		t.Fatalf("Reserve(%q) = reserved %v, %v; want a reservation", key, reserved, err)
	}
	return rec
}

// lookup returns key's record, and whether there is one.
func lookup(t *testing.T, s idempotency.Store, key string) (idempotency.Record, bool) {
	t.Helper()
	rec, found, err := s.Lookup(ctx, key)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", key, err)
	}
	return rec, found
}

// wantLeaseLost fails t unless err matches ErrLeaseLost.
func wantLeaseLost(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("%s: got %v, want ErrLeaseLost", what, err)
	}
}

func created(body string) *idempotency.Response {
	return &idempotency.Response{Status: 201, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(body)}
}

func testReserveFree(t *testing.T, b Backend) {
	before := time.Now()
	rec := reserve(t, b.Store, "k")
	if rec.Token == 0 {
		t.Error("a reservation's token is zero")
	}
	if !rec.InFlight() || rec.Fingerprint != fp(1) {
		t.Errorf("reservation = %+v; want in flight with the request's fingerprint", rec)
	}
	if rec.Expires.Before(before.Add(lease-time.Second)) || rec.Expires.After(time.Now().Add(lease+time.Second)) {
		t.Errorf("reservation expires %v; want about a lease (%v) from %v", rec.Expires, lease, before)
	}
	got, found := lookup(t, b.Store, "k")
	if !found || got.Token != rec.Token || !got.InFlight() {
		t.Errorf("Lookup = %+v, %v; want the reservation", got, found)
	}
	if _, found := lookup(t, b.Store, "absent"); found {
		t.Error("Lookup found a key never reserved")
	}
}

func testReserveTaken(t *testing.T, b Backend) {
	first := reserve(t, b.Store, "k")
	for _, f := range []idempotency.Fingerprint{fp(1), fp(2)} {
		rec, reserved, err := b.Store.Reserve(ctx, "k", f, lease)
		if err != nil || reserved {
			t.Fatalf("second Reserve = reserved %v, %v; want the existing record", reserved, err)
		}
		if rec.Token != first.Token || rec.Fingerprint != fp(1) || !rec.InFlight() {
			t.Errorf("second Reserve returned %+v; want the first reservation unchanged", rec)
		}
	}
	if err := b.Store.Complete(ctx, "k", first.Token, created("done"), ttl); err != nil {
		t.Fatal(err)
	}
	rec, reserved, err := b.Store.Reserve(ctx, "k", fp(1), lease)
	if err != nil || reserved || rec.InFlight() || string(rec.Response.Body) != "done" {
		t.Errorf("Reserve of a completed key = %+v, reserved %v, %v; want the completed record", rec, reserved, err)
	}
}

func testOneWinner(t *testing.T, b Backend) {
	const callers = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
		tokens  = map[uint64]bool{}
	)
	for range callers {
		wg.Go(func() {
			rec, reserved, err := b.Store.Reserve(ctx, "contended", fp(1), lease)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			tokens[rec.Token] = true
			if reserved {
				winners++
			}
		})
	}
	wg.Wait()
	if winners != 1 || len(tokens) != 1 {
		t.Errorf("%d callers: %d reserved, %d distinct tokens seen; want exactly 1 and 1", callers, winners, len(tokens))
	}
}

func testComplete(t *testing.T, b Backend) {
	rec := reserve(t, b.Store, "k")
	wantLeaseLost(t, "Complete with another token", b.Store.Complete(ctx, "k", rec.Token+1, created("x"), ttl))
	wantLeaseLost(t, "Complete of an absent key", b.Store.Complete(ctx, "absent", rec.Token, created("x"), ttl))
	if got, _ := lookup(t, b.Store, "k"); !got.InFlight() {
		t.Fatal("a refused Complete changed the reservation")
	}
	before := time.Now()
	if err := b.Store.Complete(ctx, "k", rec.Token, created("first"), ttl); err != nil {
		t.Fatal(err)
	}
	got, found := lookup(t, b.Store, "k")
	if !found || got.InFlight() || string(got.Response.Body) != "first" || got.Fingerprint != fp(1) {
		t.Fatalf("after Complete: %+v, %v", got, found)
	}
	if got.Expires.Before(before.Add(ttl-time.Second)) || got.Expires.After(time.Now().Add(ttl+time.Second)) {
		t.Errorf("completed record expires %v; want about a TTL (%v) from %v", got.Expires, ttl, before)
	}
	wantLeaseLost(t, "Complete of a completed key with another response", b.Store.Complete(ctx, "k", rec.Token, created("second"), ttl))
	wantLeaseLost(t, "Release of a completed key", b.Store.Release(ctx, "k", rec.Token))
	if got, _ := lookup(t, b.Store, "k"); got.Response == nil || string(got.Response.Body) != "first" {
		t.Errorf("the first response was replaced or removed: %+v", got)
	}
}

func testResponses(t *testing.T, b Backend) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	tests := []struct {
		name string
		resp idempotency.Response
	}{
		{"created", *created("ok")},
		{"no header, no body", idempotency.Response{Status: 204}},
		{"500 after the effect", idempotency.Response{Status: 500, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"error":"late"}`)}},
		{"binary body", idempotency.Response{Status: 200, Body: []byte{0, 1, 2, 0xff, '\n', 0}}},
		{"64 KiB body", idempotency.Response{Status: 200, Body: big}},
		{"many values", idempotency.Response{Status: 201, Header: http.Header{
			"Set-Cookie": {"a=1", "b=2", ""}, "Location": {"/orders/1"}, "X-Unicode": {"crème brûlée"},
		}}},
		{"not replayable", idempotency.Response{Status: 201, NotReplayable: true}},
		{"outcome unknown", idempotency.Response{Status: 500, NotReplayable: true, OutcomeUnknown: true}},
		{"highest status", idempotency.Response{Status: 999}},
	}
	for i, tt := range tests {
		key := fmt.Sprintf("resp-%d", i)
		rec := reserve(t, b.Store, key)
		if err := b.Store.Complete(ctx, key, rec.Token, &tt.resp, ttl); err != nil {
			t.Errorf("%s: Complete: %v", tt.name, err)
			continue
		}
		got, found := lookup(t, b.Store, key)
		if !found || got.Response == nil {
			t.Errorf("%s: not found after Complete", tt.name)
			continue
		}
		if msg := diffResponse(got.Response, &tt.resp); msg != "" {
			t.Errorf("%s: stored response differs: %s", tt.name, msg)
		}
		viaReserve, _, _ := b.Store.Reserve(ctx, key, fp(1), lease)
		if viaReserve.Response == nil || diffResponse(viaReserve.Response, &tt.resp) != "" {
			t.Errorf("%s: Reserve returned another response than Lookup", tt.name)
		}
	}
}

// diffResponse describes how got differs from want, or returns "". An
// empty and a nil header or body are the same.
func diffResponse(got, want *idempotency.Response) string {
	var d []string
	if got.Status != want.Status {
		d = append(d, fmt.Sprintf("status %d, want %d", got.Status, want.Status))
	}
	if got.NotReplayable != want.NotReplayable || got.OutcomeUnknown != want.OutcomeUnknown {
		d = append(d, fmt.Sprintf("NotReplayable %v OutcomeUnknown %v, want %v %v",
			got.NotReplayable, got.OutcomeUnknown, want.NotReplayable, want.OutcomeUnknown))
	}
	if !bytes.Equal(got.Body, want.Body) {
		d = append(d, fmt.Sprintf("body of %d bytes, want %d", len(got.Body), len(want.Body)))
	}
	if len(got.Header) != len(want.Header) {
		d = append(d, fmt.Sprintf("header %v, want %v", got.Header, want.Header))
	} else {
		for k, vs := range want.Header {
			if strings.Join(got.Header[k], "\x00") != strings.Join(vs, "\x00") || len(got.Header[k]) != len(vs) {
				d = append(d, fmt.Sprintf("header %s = %q, want %q", k, got.Header[k], vs))
			}
		}
	}
	return strings.Join(d, "; ")
}

func testRelease(t *testing.T, b Backend) {
	rec := reserve(t, b.Store, "k")
	wantLeaseLost(t, "Release with another token", b.Store.Release(ctx, "k", rec.Token+1))
	wantLeaseLost(t, "Release of an absent key", b.Store.Release(ctx, "absent", rec.Token))
	if err := b.Store.Release(ctx, "k", rec.Token); err != nil {
		t.Fatal(err)
	}
	if _, found := lookup(t, b.Store, "k"); found {
		t.Error("a released key is still there")
	}
	wantLeaseLost(t, "Release twice", b.Store.Release(ctx, "k", rec.Token))
	wantLeaseLost(t, "Complete after Release", b.Store.Complete(ctx, "k", rec.Token, created("x"), ttl))
	again := reserve(t, b.Store, "k")
	if again.Token == rec.Token {
		t.Error("a new reservation reused the released token")
	}
}

func testRenew(t *testing.T, b Backend) {
	rec := reserve(t, b.Store, "k")
	before := time.Now()
	if err := b.Store.Renew(ctx, "k", rec.Token, 2*lease); err != nil {
		t.Fatal(err)
	}
	got, _ := lookup(t, b.Store, "k")
	if !got.InFlight() || got.Token != rec.Token {
		t.Fatalf("after Renew: %+v", got)
	}
	if got.Expires.Before(before.Add(2*lease - time.Second)) {
		t.Errorf("renewed lease ends %v; want about %v from %v", got.Expires, 2*lease, before)
	}
	wantLeaseLost(t, "Renew with another token", b.Store.Renew(ctx, "k", rec.Token+1, lease))
	wantLeaseLost(t, "Renew of an absent key", b.Store.Renew(ctx, "absent", rec.Token, lease))
	if err := b.Store.Complete(ctx, "k", rec.Token, created("done"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wantLeaseLost(t, "Renew of a completed key", b.Store.Renew(ctx, "k", rec.Token, ttl))
	got, _ = lookup(t, b.Store, "k")
	if got.Response == nil || got.Expires.After(time.Now().Add(time.Minute+time.Second)) {
		t.Errorf("a Renew changed the completed record: %+v", got)
	}
}

func testKeys(t *testing.T, b Backend) {
	keys := []string{
		idempotency.StoreKey("", "k"),
		idempotency.StoreKey("scope-a", "k"),
		idempotency.StoreKey("scope-b", "k"),
		idempotency.StoreKey("scope-a", "K"),
		idempotency.StoreKey("sc\nope", strings.Repeat("x", 255)),
		"k", "k ", "ü",
	}
	tokens := make([]uint64, len(keys))
	seen := map[uint64]string{}
	for i, k := range keys {
		tokens[i] = reserve(t, b.Store, k).Token // each is a key of its own
		if other, dup := seen[tokens[i]]; dup {
			t.Errorf("keys %q and %q got the same token", k, other)
		}
		seen[tokens[i]] = k
	}
	for i, k := range keys {
		if err := b.Store.Complete(ctx, k, tokens[i], created(fmt.Sprint(i)), ttl); err != nil {
			t.Errorf("Complete(%q): %v", k, err)
		}
	}
	for i, k := range keys {
		got, found := lookup(t, b.Store, k)
		if !found || got.Response == nil || string(got.Response.Body) != fmt.Sprint(i) {
			t.Errorf("key %q holds %+v; want its own response %d", k, got, i)
		}
	}
}

func testLeaseExpiry(t *testing.T, b Backend) {
	needClock(t, b)
	reserve(t, b.Store, "k")
	b.advance(lease - time.Second)
	if _, reserved, _ := b.Store.Reserve(ctx, "k", fp(1), lease); reserved {
		t.Fatal("the key was free before its lease ended")
	}
	b.advance(2 * time.Second)
	if _, found := lookup(t, b.Store, "k"); found {
		t.Error("the reservation outlived its lease")
	}
	reserve(t, b.Store, "k")
}

func testRenewOutlivesLease(t *testing.T, b Backend) {
	needClock(t, b)
	rec := reserve(t, b.Store, "k")
	for range 5 { // five renewals, each before the lease ends: 2.5 leases in all
		b.advance(lease / 2)
		if err := b.Store.Renew(ctx, "k", rec.Token, lease); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	if _, reserved, _ := b.Store.Reserve(ctx, "k", fp(1), lease); reserved {
		t.Fatal("a renewed reservation expired with its first lease")
	}
	if err := b.Store.Complete(ctx, "k", rec.Token, created("slow"), ttl); err != nil {
		t.Errorf("Complete after renewals: %v", err)
	}
}

func testStaleHolder(t *testing.T, b Backend) {
	needClock(t, b)
	stale := reserve(t, b.Store, "k")
	b.advance(lease + time.Second)
	current := reserve(t, b.Store, "k")
	if current.Token == stale.Token {
		t.Fatal("a new reservation reused the expired one's token")
	}
	wantLeaseLost(t, "stale Renew", b.Store.Renew(ctx, "k", stale.Token, lease))
	wantLeaseLost(t, "stale Complete", b.Store.Complete(ctx, "k", stale.Token, created("stale"), ttl))
	wantLeaseLost(t, "stale Release", b.Store.Release(ctx, "k", stale.Token))
	if err := b.Store.Complete(ctx, "k", current.Token, created("current"), ttl); err != nil {
		t.Fatal(err)
	}
	if got, _ := lookup(t, b.Store, "k"); got.Response == nil || string(got.Response.Body) != "current" {
		t.Errorf("the current holder's response was not kept: %+v", got)
	}
	// A holder that expired with nobody taking its key is refused too.
	lone := reserve(t, b.Store, "lone")
	b.advance(lease + time.Second)
	wantLeaseLost(t, "Complete after the lease", b.Store.Complete(ctx, "lone", lone.Token, created("late"), ttl))
}

func testTTL(t *testing.T, b Backend) {
	needClock(t, b)
	rec := reserve(t, b.Store, "k")
	if err := b.Store.Complete(ctx, "k", rec.Token, created("kept"), ttl); err != nil {
		t.Fatal(err)
	}
	b.advance(ttl - time.Second)
	if got, _, _ := b.Store.Reserve(ctx, "k", fp(1), lease); got.Response == nil || string(got.Response.Body) != "kept" {
		t.Fatalf("the response was gone before its TTL: %+v", got)
	}
	b.advance(2 * time.Second)
	if _, found := lookup(t, b.Store, "k"); found {
		t.Error("the response outlived its TTL")
	}
	reserve(t, b.Store, "k")
}

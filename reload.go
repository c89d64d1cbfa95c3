package rebound

import (
	"errors"
	"reflect"
	"slices"
	"unsafe"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
)

// Reload replaces the Transport's configuration with the one opts give,
// as New would build it, atomically: a call loads the configuration once
// and finishes under it, so calls in flight finish under the policy they
// started with, and no call waits for a reload.
//
// What was learned is kept where it still applies. A policy (matched by
// its canonical pattern; "" for the default) given again unchanged keeps
// its whole chain, with its breakers, budget, admission and learned
// latencies. A changed policy keeps each part whose own configuration did
// not change: the breakers when Policy.Breaker is the same, the budget
// when Policy.Budget is, the admission (pauses, paces, quotas) when the
// retry settings that shape it are, the learned latencies when both
// configurations learn them. Function fields are compared by identity:
// the same function or closure value is unchanged. Each policy's fate is
// reported to Observer.Operator (ActionReload), with the parts reset and
// the hosts whose state they held. Isolations (Isolate) and the counters
// of Stats survive every reload.
//
// Observers given with WithObserver replace those in force; without one,
// the observers in force stay (so a reload from a policy file keeps the
// log). WithoutStats has no effect on Reload. An invalid configuration
// leaves the one in force untouched and returns every error (each a
// *ConfigError, joined), reported to Observer.Operator as well.
// Reload does not close connections: the base transport is the same.
func (t *Transport) Reload(opts ...Option) error {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	o.applyEdits()
	errs := checkPolicy("WithPolicy", "", o.policy)
	routes, routeErrs := compilePatterns(o.hosts)
	errs = append(errs, routeErrs...)
	if len(errs) > 0 {
		return t.reloadFailed(errors.Join(errs...))
	}
	t.init()
	t.mu.Lock()
	old := t.live.Load()
	if o.hasObserver {
		obs := o.observer
		t.obs.Store(&obs)
	}
	l, changes := t.assemble(o.policy, routes, old, o.hasObserver)
	t.live.Store(l)
	t.mu.Unlock()
	moved := movedHosts(old, l)
	for _, ch := range changes {
		ev := OperatorEvent{Action: ActionReload, Pattern: ch.pattern, Reset: ch.reset}
		switch {
		case ch.kept:
			ev.Detail = detailUnchanged
		case ch.added:
			ev.Detail = "policy added"
		case ch.removed:
			ev.Detail, ev.Hosts = "policy removed: its hosts' state forgotten", ch.hosts
		case len(ch.reset) > 0:
			ev.Detail, ev.Hosts = "policy changed: state reset where its configuration changed", ch.hosts
		default:
			ev.Detail = "policy changed: state kept"
		}
		if hs := moved[ch.pattern]; len(hs) > 0 && !ch.removed {
			// Hosts another policy served before: what was learned of
			// them stays with that policy's links.
			ev.Detail += "; " + detailMoved
			ev.Hosts = append(ev.Hosts, hs...)
		}
		t.operator(ev)
	}
	return nil
}

// ReloadFile reloads the Transport (see Reload) from the policy file at
// path (see LoadPolicyFile), with opts applied first (observers, edits,
// anything the file does not say). A file that cannot be read or is
// invalid leaves the configuration in force and returns the error,
// reported to Observer.Operator as a failed reload. Call it when the
// file changed: on SIGHUP, or from a watcher of your choice.
func (t *Transport) ReloadFile(path string, opts ...Option) error {
	fileOpts, err := LoadPolicyFile(path)
	if err != nil {
		return t.reloadFailed(err)
	}
	return t.Reload(append(slices.Clip(opts), fileOpts...)...)
}

// reloadFailed reports a reload that failed with err, and returns err.
func (t *Transport) reloadFailed(err error) error {
	t.operator(OperatorEvent{Action: ActionReload, Err: err,
		Detail: "invalid configuration: kept the one in force"})
	return err
}

// chainChange is what a reload did to one policy's chain.
type chainChange struct {
	pattern string
	kept    bool     // the whole chain kept, with its state
	added   bool     // a policy with no chain before
	removed bool     // a policy no longer given
	reset   []string // the links whose state was not carried over
	hosts   []string // the hosts whose state was lost (removed, or reset)
}

// detailMoved ends the Detail of a reload's event for a policy that now
// serves hosts another policy served (a pattern added or removed): they
// start fresh under it, and its event lists them in Hosts.
const detailMoved = "hosts that were under another policy start fresh"

// movedHosts returns, by the pattern of the policy that now serves them,
// the hosts old's breakers tracked that l routes to another policy. A nil
// old moved nothing.
func movedHosts(old, l *live) map[string][]string {
	if old == nil {
		return nil
	}
	var moved map[string][]string
	for _, c := range old.chainsByKey() {
		for _, h := range c.hosts() {
			if now := l.chainFor(h); now.pattern != c.pattern {
				if moved == nil {
					moved = map[string][]string{}
				}
				if len(moved[now.pattern]) < maxReportedHosts {
					moved[now.pattern] = append(moved[now.pattern], h)
				}
			}
		}
	}
	for _, hs := range moved {
		slices.Sort(hs)
	}
	return moved
}

// detailUnchanged is the Detail of a reload's event for a policy given
// again unchanged.
const detailUnchanged = "policy unchanged: state kept"

// maxReportedHosts bounds OperatorEvent.Hosts.
const maxReportedHosts = 100

// chainsByKey returns l's chains by their canonical pattern ("" for the
// default).
func (l *live) chainsByKey() map[string]*chain {
	m := map[string]*chain{"": l.def}
	if l.router == nil {
		return m
	}
	for _, c := range l.chains()[1:] {
		name, port, wildcard, err := canonicalPattern(c.pattern)
		if err == nil {
			m[patternKey(name, port, wildcard)] = c
		}
	}
	return m
}

// hosts returns the hosts c's breakers track, at most maxReportedHosts,
// sorted.
func (c *chain) hosts() []string {
	if c.breaker == nil {
		return nil
	}
	var hs []string
	for _, h := range c.breaker.Snapshot() {
		hs = append(hs, h.Host)
	}
	slices.Sort(hs)
	if len(hs) > maxReportedHosts {
		hs = hs[:maxReportedHosts]
	}
	return hs
}

// breakerChange and budgetRefusal report to the observers in force: a
// breaker or budget a reload kept reports to the observers it brought.
// (The retry loop's observer is fixed when the loop is built.)
func (t *Transport) breakerChange(ch breaker.StateChange) {
	if o := t.obs.Load(); o != nil && o.Breaker != nil {
		o.Breaker(ch)
	}
}

func (t *Transport) budgetRefusal(r budget.Refusal) {
	if o := t.obs.Load(); o != nil && o.Budget != nil {
		o.Budget(r)
	}
}

// sameValue reports whether a and b are the same configuration: equal
// field by field, pointers followed, and func values (alone or inside an
// interface) the same function or closure. When in doubt it reports
// false, which only costs the state a reload could have kept.
func sameValue[T any](a, b T) bool {
	return same(reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem(), 0)
}

// same compares a and b, of one type, for sameValue.
func same(a, b reflect.Value, depth int) bool {
	if depth > 32 {
		return false
	}
	switch a.Kind() {
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Func:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() && b.IsNil()
		}
		// A func value is one pointer to its closure; reflect's Pointer
		// gives only the code, shared by every closure of one literal.
		return a.CanAddr() && b.CanAddr() &&
			*(*unsafe.Pointer)(unsafe.Pointer(a.UnsafeAddr())) == *(*unsafe.Pointer)(unsafe.Pointer(b.UnsafeAddr()))
	case reflect.Pointer:
		if a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		if a.IsNil() || b.IsNil() {
			return false
		}
		return same(a.Elem(), b.Elem(), depth+1)
	case reflect.Chan, reflect.UnsafePointer:
		return a.UnsafePointer() == b.UnsafePointer()
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() && b.IsNil()
		}
		if a.CanAddr() && b.CanAddr() &&
			*(*[2]unsafe.Pointer)(unsafe.Pointer(a.UnsafeAddr())) == *(*[2]unsafe.Pointer)(unsafe.Pointer(b.UnsafeAddr())) {
			return true // one dynamic type, one data word: one value
		}
		if a.Elem().Type() != b.Elem().Type() {
			return false
		}
		return same(a.Elem(), b.Elem(), depth+1)
	case reflect.Struct:
		for i := range a.NumField() {
			if !same(a.Field(i), b.Field(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !same(a.Index(i), b.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !same(a.Index(i), b.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		it := a.MapRange()
		for it.Next() {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !same(it.Value(), bv, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

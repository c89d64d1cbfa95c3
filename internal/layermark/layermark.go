// Package layermark carries, in the context of a request a service is
// serving, whether a call the service made for it through a rebound
// Transport spent its retries: rebound.Layer puts a Mark in the request's
// context, the retry loop sets it when such a call gives up, and Layer
// then tells the caller above not to retry.
package layermark

import (
	"context"
	"sync/atomic"
)

// Mark records that a call below spent its retries. The zero value is an
// unset mark.
type Mark struct{ spent atomic.Bool }

type key struct{}

// With returns ctx carrying a new, unset mark, and the mark.
func With(ctx context.Context) (context.Context, *Mark) {
	m := new(Mark)
	return context.WithValue(ctx, key{}, m), m
}

// From returns the mark ctx carries, or nil.
func From(ctx context.Context) *Mark {
	if ctx == nil {
		return nil
	}
	m, _ := ctx.Value(key{}).(*Mark)
	return m
}

// Set records that a call spent its retries. A nil mark records nothing.
func (m *Mark) Set() {
	if m != nil {
		m.spent.Store(true)
	}
}

// Spent reports whether Set was called. A nil mark is never spent.
func (m *Mark) Spent() bool { return m != nil && m.spent.Load() }

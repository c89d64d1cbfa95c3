// Package keymark lets the retry loop tell an idempotency key the client
// link generated from one the caller set: the link puts the key it
// generated in the context of the request it passes on, and the loop,
// before it says what licensed a retry, compares the key the request
// carries with the mark.
//
// The mark is a context of its own type, not a context.WithValue, so that
// the link can allocate it together with its copy of the request: a key
// costs no allocation more for being marked.
package keymark

import "context"

// Ctx is a context that carries Key as the generated key of its request.
// Its zero value is not usable: set Context to the request's context.
type Ctx struct {
	context.Context
	Key string
}

type markKey struct{}

// Value returns Key for the mark's own key and asks the parent otherwise.
func (c *Ctx) Value(key any) any {
	if key == (markKey{}) {
		return c.Key
	}
	return c.Context.Value(key)
}

// Generated reports whether key is the key the client link generated for
// the request whose context is ctx.
func Generated(ctx context.Context, key string) bool {
	if ctx == nil || key == "" {
		return false
	}
	g, _ := ctx.Value(markKey{}).(string)
	return g == key
}

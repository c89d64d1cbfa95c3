// Package learnedcut marks the context of an attempt that follows one cut
// by a timeout the retry loop learned from the host's latency
// (transport.LearnedTimeoutConfig). The loop marks; classify.ServerHealth
// reads the mark: the caller's deadline ending a marked attempt does not
// count against the host, since the time the deadline left it was spent
// by the client's guess, not refused by the server.
//
// It is internal so that the mark adds no exported name: only the retry
// loop sets it, only ServerHealth reads it.
package learnedcut

import "context"

// key is the context key of the mark.
type key struct{}

// Mark returns a copy of ctx marked as the context of an attempt that
// follows a learned cut of its call.
func Mark(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, true)
}

// Marked reports whether ctx was marked by Mark.
func Marked(ctx context.Context) bool {
	v, _ := ctx.Value(key{}).(bool)
	return v
}

package idempotency

import "context"

type noKeyContextKey struct{}

// WithoutKey returns a copy of ctx in which the client link generates no
// key for a request sent with it, as if Config.Skip said so for that call:
// for a call to an endpoint that rejects unknown headers, or one the
// caller deduplicates itself. A key given with WithKey, or set on the
// request, still goes out. It applies to every call made with ctx or a
// context derived from it.
func WithoutKey(ctx context.Context) context.Context {
	return context.WithValue(ctx, noKeyContextKey{}, true)
}

// withoutKey reports whether ctx was made by WithoutKey.
func withoutKey(ctx context.Context) bool {
	skip, _ := ctx.Value(noKeyContextKey{}).(bool)
	return skip
}

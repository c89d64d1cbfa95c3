// Package transport is the retry loop of rebound: an http.RoundTripper that
// sends an attempt, asks package classify for a verdict, waits (full-jitter
// exponential backoff, or the server's Retry-After), rewinds the body and
// tries again, then gives up transparently.
package transport

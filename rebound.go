// Package rebound makes an http.Client absorb transient failures without
// turning an outage into a retry storm.
//
// NewClient returns a client, and NewTransport wraps any RoundTripper, with
// a chain of small decorators, each its own package and usable alone:
//
//	caller ─► transport (retry loop, classify) ─► base (go-cleanhttp pooled)
//
// With no options the chain uses the defaults of every link (see the
// README's table): 4 attempts, full-jitter exponential backoff from 100 ms
// to 10 s, the server's Retry-After honoured up to 60 s, non-idempotent
// requests retried only when provably unsent or keyed.
package rebound

import (
	"net/http"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound/transport"
)

// Option configures NewClient and NewTransport.
type Option func(*options)

type options struct {
	retry transport.Config
}

// WithRetry sets the retry loop's configuration. Zero fields take the
// defaults of transport.Config.
func WithRetry(cfg transport.Config) Option {
	return func(o *options) {
		obs := o.retry.Observer
		o.retry = cfg
		if cfg.Observer == nil {
			o.retry.Observer = obs
		}
	}
}

// WithObserver reports every decision of the chain to obs (nil: none).
func WithObserver(obs transport.Observer) Option {
	return func(o *options) { o.retry.Observer = obs }
}

// NewTransport wraps base in the rebound chain configured by opts. A nil
// base means a pooled transport from go-cleanhttp, owned by the chain.
//
//	client := &http.Client{Transport: rebound.NewTransport(nil)}
//	// or, keeping an existing client's transport:
//	client.Transport = rebound.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) http.RoundTripper {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	return transport.New(base, o.retry)
}

// NewClient returns an http.Client whose Transport is NewTransport(nil,
// opts...). It sets no overall timeout: bound each call with its request's
// context.
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(nil, opts...)}
}

package rebound

import (
	"math"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
	"github.com/rebound-http/rebound/transport"
)

// effective returns p with the values each link uses in place of the
// zero (or out-of-range) fields it replaces by a default, for PolicyFor.
// The links normalise their own copies when the chain is built; this
// mirrors their documented rules (each Config field's doc), and
// TestPolicyForEffective holds it to them.
func effective(p Policy) Policy {
	r := &p.Retry
	switch {
	case r.MaxAttempts == 0:
		r.MaxAttempts = transport.DefaultMaxAttempts
	case r.MaxAttempts < 0:
		r.MaxAttempts = 1
	}
	switch {
	case r.BaseDelay == 0:
		r.BaseDelay = transport.DefaultBaseDelay
	case r.BaseDelay < 0:
		r.BaseDelay = 0
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = transport.DefaultMaxDelay
	}
	r.MaxDelay = max(r.MaxDelay, r.BaseDelay)
	switch {
	case r.MaxRetryAfter == 0:
		r.MaxRetryAfter = transport.DefaultMaxRetryAfter
	case r.MaxRetryAfter < 0:
		r.MaxRetryAfter = 0
	}
	if r.MaxBodyBytes == 0 {
		r.MaxBodyBytes = transport.DefaultMaxBodyBytes
	}
	if r.MaxResponseBytes <= 0 {
		r.MaxResponseBytes = transport.DefaultMaxResponseBytes
	}
	if h := r.Hedge; h != nil {
		c := *h
		if c.MaxHedges <= 0 {
			c.MaxHedges = 1
		}
		c.Delay = max(c.Delay, 0)
		if !(c.Quantile > 0 && c.Quantile < 1) {
			c.Quantile = transport.DefaultHedgeQuantile
		}
		if c.MinDelay <= 0 {
			c.MinDelay = transport.DefaultHedgeMin
		}
		if c.MaxDelay <= 0 {
			c.MaxDelay = transport.DefaultHedgeMax
		}
		c.MaxDelay = max(c.MaxDelay, c.MinDelay)
		if c.MinSamples <= 0 {
			c.MinSamples = transport.DefaultHedgeSamples
		}
		r.Hedge = &c
	}
	if l := r.LearnedTimeout; l != nil {
		c := *l
		if !(c.Quantile > 0 && c.Quantile < 1) {
			c.Quantile = transport.DefaultLearnedQuantile
		}
		if !(c.Multiplier >= 1) || math.IsInf(c.Multiplier, 0) {
			c.Multiplier = transport.DefaultLearnedMultiplier
		}
		if c.MinTimeout <= 0 {
			c.MinTimeout = transport.DefaultLearnedMin
		}
		if c.MaxTimeout <= 0 {
			c.MaxTimeout = transport.DefaultLearnedMax
		}
		c.MaxTimeout = max(c.MaxTimeout, c.MinTimeout)
		if c.MinSamples <= 0 {
			c.MinSamples = transport.DefaultLearnedSamples
		}
		r.LearnedTimeout = &c
	}

	b := &p.Breaker
	if b.Window <= 0 {
		b.Window = breaker.DefaultWindow
	}
	if b.MinCalls <= 0 {
		b.MinCalls = breaker.DefaultMinCalls
	}
	if !(b.FailureRate > 0) {
		b.FailureRate = breaker.DefaultFailureRate
	}
	if b.OpenTimeout <= 0 {
		b.OpenTimeout = breaker.DefaultOpenTimeout
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = breaker.DefaultJitter
	case b.Jitter < 0 || math.IsNaN(b.Jitter):
		b.Jitter = 0
	}
	if b.MaxHosts <= 0 {
		b.MaxHosts = breaker.DefaultMaxHosts
	}

	g := &p.Budget
	if g.NewBudget == nil {
		switch {
		case g.Ratio.Ratio == 0 || math.IsNaN(g.Ratio.Ratio):
			g.Ratio.Ratio = budget.DefaultRatio
		case g.Ratio.Ratio < 0:
			g.Ratio.Ratio = 0
		}
		if g.Ratio.Window <= 0 {
			g.Ratio.Window = budget.DefaultWindow
		}
		switch {
		case g.Ratio.MinPerSecond == 0 || math.IsNaN(g.Ratio.MinPerSecond):
			g.Ratio.MinPerSecond = budget.DefaultMinPerSecond
		case g.Ratio.MinPerSecond < 0:
			g.Ratio.MinPerSecond = 0
		}
	}
	if g.MaxHosts <= 0 {
		g.MaxHosts = budget.DefaultMaxHosts
	}
	if t := g.Throttle; t != nil {
		c := *t
		if !(c.K > 0) {
			c.K = budget.DefaultK
		}
		if c.Window <= 0 {
			c.Window = budget.DefaultThrottleWindow
		}
		g.Throttle = &c
	}
	return p
}

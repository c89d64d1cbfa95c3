package rebound

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rebound-http/rebound/transport"
	"golang.org/x/net/http/httpguts"
)

// ConfigError is an invalid configuration, reported before any request is
// sent: by New for options, by ParsePolicyFile and LoadPolicyFile for a
// policy file. New joins several with errors.Join; errors.As finds the
// first. The zero value reads as an invalid configuration of unknown
// origin.
type ConfigError struct {
	// File is the path of the policy file (LoadPolicyFile); "" otherwise.
	File string
	// Line and Column locate the error in a policy file, counted from 1;
	// zero when the error is not from a file or has no one place.
	Line, Column int
	// Pattern is the host pattern whose pattern or policy is invalid, as
	// written; "" for the default policy or the file as a whole.
	Pattern string
	// Field is the invalid setting: the JSON field of a policy file
	// ("max_attempts"), or the Policy field of an option ("Retry.Jitter").
	// It is "" when the error is not about one setting (a pattern, a
	// syntax error).
	Field string
	// Err says what is wrong.
	Err error

	where  string // the message's path to the setting, as the source names it
	inFile bool   // from a policy file
}

// Error returns "rebound: " and the place (file, line, column; the host
// pattern and the field) and what is wrong, for example:
//
//	rebound: policy file line 7, column 23: hosts["payments.example.com"].max_attempts: -1 is not in [1, 100]
//	rebound: WithHostPolicy("api.example.com"): Retry.Jitter: unknown jitter 7
func (e *ConfigError) Error() string {
	var parts []string
	src := e.File
	if src == "" && (e.inFile || e.Line > 0) {
		src = "policy file"
	}
	if e.Line > 0 {
		src += fmt.Sprintf(" line %d, column %d", e.Line, e.Column)
	}
	if src != "" {
		parts = append(parts, src)
	}
	where := e.where
	if where == "" {
		switch {
		case e.Pattern != "" && e.Field != "":
			where = strconv.Quote(e.Pattern) + ": " + e.Field
		case e.Pattern != "":
			where = "host pattern " + strconv.Quote(e.Pattern)
		default:
			where = e.Field
		}
	}
	if where != "" {
		parts = append(parts, where)
	}
	if e.Err == nil {
		parts = append(parts, "invalid configuration")
	} else {
		parts = append(parts, e.Err.Error())
	}
	return "rebound: " + strings.Join(parts, ": ")
}

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// checkPolicy returns the errors of settings of p that no link can carry
// out (most out-of-range values are documented as meaning a default, and
// are not errors). where names the option ("WithPolicy",
// `WithHostPolicy("api.example.com")`), pattern its host pattern.
func checkPolicy(where, pattern string, p Policy) []error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &ConfigError{Pattern: pattern, Field: field, Err: fmt.Errorf(format, args...), where: where + ": " + field})
	}
	if p.Retry.Jitter > transport.DecorrelatedJitter {
		bad("Retry.Jitter", "unknown jitter %d", p.Retry.Jitter)
	}
	if h := p.Retry.Hedge; h != nil {
		// The policy file's ranges (see ParsePolicyFile); zero means the
		// default of each field.
		if n := h.MaxHedges; n != 0 && !(n >= 1 && n <= 10) {
			bad("Retry.Hedge.MaxHedges", "%d is not in [1, 10]", n)
		}
		if d := h.Delay; !(d >= 0 && d <= time.Minute) {
			bad("Retry.Hedge.Delay", "%v is not in [0, 1m]", d)
		}
		if q := h.Quantile; q != 0 && !(q >= 0.5 && q <= 0.999) {
			bad("Retry.Hedge.Quantile", "%v is not in [0.5, 0.999]", q)
		}
		if d := h.MinDelay; d != 0 && !(d >= time.Millisecond && d <= time.Minute) {
			bad("Retry.Hedge.MinDelay", "%v is not in [1ms, 1m]", d)
		}
		if d := h.MaxDelay; d != 0 && !(d >= time.Millisecond && d <= 10*time.Minute) {
			bad("Retry.Hedge.MaxDelay", "%v is not in [1ms, 10m]", d)
		}
		if h.MinDelay > 0 && h.MaxDelay > 0 && h.MaxDelay < h.MinDelay {
			bad("Retry.Hedge.MaxDelay", "%v is below MinDelay %v", h.MaxDelay, h.MinDelay)
		}
		if n := h.MinSamples; n != 0 && !(n >= 1 && n <= 1000) {
			bad("Retry.Hedge.MinSamples", "%d is not in [1, 1000] (a host's latency is kept over 1,000 to 2,000 attempts)", n)
		}
	}
	if l := p.Retry.LearnedTimeout; l != nil {
		if q := l.Quantile; q != 0 && !(q >= 0.5 && q <= 0.9999) {
			bad("Retry.LearnedTimeout.Quantile", "%v is not in [0.5, 0.9999]", q)
		}
		if m := l.Multiplier; m != 0 && !(m >= 1 && m <= 100) {
			bad("Retry.LearnedTimeout.Multiplier", "%v is not in [1, 100] (a timeout below the host's usual latency would cut healthy attempts)", m)
		}
		if d := l.MinTimeout; d != 0 && !(d >= time.Millisecond && d <= time.Hour) {
			bad("Retry.LearnedTimeout.MinTimeout", "%v is not in [1ms, 1h]", d)
		}
		if d := l.MaxTimeout; d != 0 && !(d >= time.Millisecond && d <= time.Hour) {
			bad("Retry.LearnedTimeout.MaxTimeout", "%v is not in [1ms, 1h]", d)
		}
		if l.MinTimeout > 0 && l.MaxTimeout > 0 && l.MaxTimeout < l.MinTimeout {
			bad("Retry.LearnedTimeout.MaxTimeout", "%v is below MinTimeout %v", l.MaxTimeout, l.MinTimeout)
		}
		if n := l.MinSamples; n != 0 && !(n >= 1 && n <= 1000) {
			bad("Retry.LearnedTimeout.MinSamples", "%d is not in [1, 1000] (a host's latency is kept over 1,000 to 2,000 attempts)", n)
		}
	}
	if h := p.Retry.AttemptHeader; h != "" && !httpguts.ValidHeaderFieldName(h) {
		bad("Retry.AttemptHeader", "%q is not a valid header name (net/http would refuse every request)", h)
	}
	if h := p.Idempotency.Header; h != "" && !httpguts.ValidHeaderFieldName(h) {
		bad("Idempotency.Header", "%q is not a valid header name (net/http would refuse every request)", h)
	}
	for _, m := range p.Idempotency.Methods {
		if !httpguts.ValidHeaderFieldName(m) {
			bad("Idempotency.Methods", "%q is not a request method (net/http would refuse it)", m)
		}
	}
	return errs
}

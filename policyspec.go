package rebound

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// The fields of a policy in a policy file (see ParsePolicyFile), each with
// the parser that checks its value and sets it.
var policyFields = []policyField{
	intField("max_attempts", 1, 100, func(p *Policy, n int) { p.Retry.MaxAttempts = n }),
	durationField("base_delay", 0, time.Minute, func(p *Policy, d time.Duration) { p.Retry.BaseDelay = noneIfZero(d) }),
	durationField("max_delay", 0, 10*time.Minute, func(p *Policy, d time.Duration) {
		if d == 0 {
			p.Retry.BaseDelay = -1 // every wait is capped at zero: no backoff
			return
		}
		p.Retry.MaxDelay = d
	}),
	durationField("max_retry_after", 0, time.Hour, func(p *Policy, d time.Duration) { p.Retry.MaxRetryAfter = noneIfZero(d) }),
	durationField("attempt_timeout", 0, time.Hour, func(p *Policy, d time.Duration) { p.Retry.AttemptTimeout = d }),
	{name: "retryable_statuses", parse: parseStatuses},
	boolField("disable_wait_hints", func(p *Policy, b bool) { p.Retry.DisableWaitHints = b }),
	boolField("disable_pacing", func(p *Policy, b bool) { p.Retry.DisablePacing = b }),
	boolField("disable_adaptive_pace", func(p *Policy, b bool) { p.Retry.DisableAdaptivePace = b }),
	boolField("adaptive_rate", func(p *Policy, b bool) { p.Retry.AdaptiveRate = b }), // deprecated, ignored

	boolField("hedge", func(p *Policy, b bool) {}), // applied once the whole policy is read
	intField("hedge_max", 1, 10, func(p *Policy, n int) { hedgeOf(p).MaxHedges = n }),
	durationField("hedge_delay", 0, time.Minute, func(p *Policy, d time.Duration) { hedgeOf(p).Delay = d }),
	floatField("hedge_quantile", 0.5, 0.999, func(p *Policy, f float64) { hedgeOf(p).Quantile = f }),
	durationField("hedge_min_delay", time.Millisecond, time.Minute, func(p *Policy, d time.Duration) { hedgeOf(p).MinDelay = d }),
	durationField("hedge_max_delay", time.Millisecond, 10*time.Minute, func(p *Policy, d time.Duration) { hedgeOf(p).MaxDelay = d }),
	boolField("learned_timeout", func(p *Policy, b bool) {}), // applied once the whole policy is read
	floatField("learned_timeout_quantile", 0.5, 0.9999, func(p *Policy, f float64) { learnedOf(p).Quantile = f }),
	floatField("learned_timeout_multiplier", 1, 100, func(p *Policy, f float64) { learnedOf(p).Multiplier = f }),
	durationField("learned_timeout_min", time.Millisecond, time.Hour, func(p *Policy, d time.Duration) { learnedOf(p).MinTimeout = d }),
	durationField("learned_timeout_max", time.Millisecond, time.Hour, func(p *Policy, d time.Duration) { learnedOf(p).MaxTimeout = d }),

	floatField("budget_ratio", 0, 10, func(p *Policy, f float64) { p.Budget.Ratio.Ratio = noneIfZeroFloat(f) }),
	floatField("budget_min_per_second", 0, 10000, func(p *Policy, f float64) { p.Budget.Ratio.MinPerSecond = noneIfZeroFloat(f) }),
	durationField("budget_window", time.Millisecond, 10*time.Minute, func(p *Policy, d time.Duration) { p.Budget.Ratio.Window = d }),
	boolField("budget_per_host", func(p *Policy, b bool) { p.Budget.PerHost = b }),

	durationField("breaker_open_timeout", time.Millisecond, 10*time.Minute, func(p *Policy, d time.Duration) { p.Breaker.OpenTimeout = d }),
	intField("breaker_min_calls", 1, 100, func(p *Policy, n int) { p.Breaker.MinCalls = n }),
	floatField("breaker_failure_rate", 0.01, 0.8, func(p *Policy, f float64) { p.Breaker.FailureRate = f }),

	boolField("keys_honored", func(p *Policy, b bool) { p.KeysHonored = b }),
	boolField("trust_caller_keys", func(p *Policy, b bool) { p.TrustCallerKeys = b }),
	boolField("disable_idempotency_keys", func(p *Policy, b bool) { p.DisableIdempotencyKeys = b }),
	boolField("disable_budget", func(p *Policy, b bool) { p.DisableBudget = b }),
	boolField("disable_breaker", func(p *Policy, b bool) { p.DisableBreaker = b }),
}

// hedgeOf returns p's hedging configuration, making it.
func hedgeOf(p *Policy) *transport.HedgeConfig {
	if p.Retry.Hedge == nil {
		p.Retry.Hedge = &transport.HedgeConfig{}
	}
	return p.Retry.Hedge
}

// learnedOf returns p's learned-timeout configuration, making it.
func learnedOf(p *Policy) *transport.LearnedTimeoutConfig {
	if p.Retry.LearnedTimeout == nil {
		p.Retry.LearnedTimeout = &transport.LearnedTimeoutConfig{}
	}
	return p.Retry.LearnedTimeout
}

// switched are the fields that turn a feature on, each with the prefix of
// the fields that configure it: those need the switch set to true, so
// that a policy never reads as configuring a feature it leaves off.
var switched = []struct{ name, prefix string }{
	{"hedge", "hedge_"},
	{"learned_timeout", "learned_timeout_"},
}

// fieldAliases are other names accepted for a field.
var fieldAliases = map[string]string{
	"honors_idempotency_keys": "keys_honored",
}

var (
	fieldByName = func() map[string]*policyField {
		m := make(map[string]*policyField, len(policyFields))
		for i := range policyFields {
			m[policyFields[i].name] = &policyFields[i]
		}
		return m
	}()
	fieldNames = func() []string {
		var names []string
		for _, f := range policyFields {
			names = append(names, f.name)
		}
		for a := range fieldAliases {
			names = append(names, a)
		}
		sort.Strings(names)
		return names
	}()
)

// policyField is one field of a policy: its JSON name and the function
// that checks a raw value and sets it in the policy being built.
type policyField struct {
	name  string
	parse func(s *specParser, raw json.RawMessage) error
}

// specParser holds one policy being read from a file.
type specParser struct {
	pattern string // "" for the default policy
	where   string // "default" or `hosts["api.example.com"]`
	policy  Policy
	durs    map[string]time.Duration // durations given, for checks across fields
	bools   map[string]bool          // booleans given, for checks across fields
}

// noneIfZero maps a zero written in the file to the negative value by
// which the link's Config means zero (its own zero means its default).
func noneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// noneIfZeroFloat is noneIfZero for ratios.
func noneIfZeroFloat(f float64) float64 {
	if f == 0 {
		return -1
	}
	return f
}

func intField(name string, lo, hi int64, set func(*Policy, int)) policyField {
	return policyField{name: name, parse: func(s *specParser, raw json.RawMessage) error {
		n, err := json.Number(raw).Int64()
		if !isNumber(raw) || err != nil {
			return fmt.Errorf("want a whole number, got %s", describeRaw(raw))
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is not in [%d, %d]", n, lo, hi)
		}
		set(&s.policy, int(n))
		return nil
	}}
}

func floatField(name string, lo, hi float64, set func(*Policy, float64)) policyField {
	return policyField{name: name, parse: func(s *specParser, raw json.RawMessage) error {
		f, err := json.Number(raw).Float64()
		if !isNumber(raw) || err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("want a number, got %s", describeRaw(raw))
		}
		if f < lo || f > hi {
			return fmt.Errorf("%v is not in [%v, %v]", f, lo, hi)
		}
		set(&s.policy, f)
		return nil
	}}
}

func durationField(name string, lo, hi time.Duration, set func(*Policy, time.Duration)) policyField {
	return policyField{name: name, parse: func(s *specParser, raw json.RawMessage) error {
		d, err := durationString(raw)
		if err != nil {
			return err
		}
		switch {
		case d < 0:
			return fmt.Errorf("%v is negative", d)
		case d < lo:
			return fmt.Errorf("%v is below the least %v", d, lo)
		case d > hi:
			return fmt.Errorf("%v is over the most %v", d, hi)
		}
		s.durs[name] = d
		set(&s.policy, d)
		return nil
	}}
}

func boolField(name string, set func(*Policy, bool)) policyField {
	return policyField{name: name, parse: func(s *specParser, raw json.RawMessage) error {
		switch string(raw) {
		case "true":
			s.bools[name] = true
			set(&s.policy, true)
		case "false":
			s.bools[name] = false
			set(&s.policy, false)
		default:
			return fmt.Errorf("want true or false, got %s", describeRaw(raw))
		}
		return nil
	}}
}

// parseStatuses reads retryable_statuses: failure statuses only. Retrying
// a success or a redirect is not a matter of configuration but of a
// classify.Classifier hook that reads the response.
func parseStatuses(s *specParser, raw json.RawMessage) error {
	var elems []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return fmt.Errorf("want an array of statuses such as [429, 503], got %s", describeRaw(raw))
	}
	ints := make([]int, 0, len(elems))
	for _, e := range elems {
		n, err := json.Number(e).Int64()
		switch {
		case !isNumber(e) || err != nil:
			return fmt.Errorf("want whole numbers, got %s", describeRaw(e))
		case n < 400:
			return fmt.Errorf("%d is below 400: only failures are retried by status (retrying a success or a redirect is a Classifier hook's job)", n)
		case n > 599:
			return fmt.Errorf("%d is not an HTTP failure status (400 to 599)", n)
		}
		ints = append(ints, int(n))
	}
	set := classify.NewStatuses(ints...)
	s.policy.Retry.Classifier = &classify.Classifier{Retryable: &set}
	return nil
}

// policy parses one policy object. It returns nil, with the errors
// recorded, when the policy is invalid, and a non-nil error only when
// parsing must stop.
func (p *fileParser) policy(pattern, where string) (*Policy, error) {
	tok, off, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		if err := p.fail(off, pattern, where, fmt.Errorf("want an object of policy fields, got %s", describe(tok))); err != nil {
			return nil, err
		}
		return nil, p.skipRest(tok)
	}
	s := &specParser{pattern: pattern, where: where, durs: map[string]time.Duration{}, bools: map[string]bool{}}
	errsBefore := len(p.errs)
	seen := map[string]string{} // field → the name it was given under
	offsets := map[string]int64{}
	for p.dec.More() {
		tok, off, err := p.token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		name := key
		if a, ok := fieldAliases[key]; ok {
			name = a
		}
		f := fieldByName[name]
		switch {
		case f == nil:
			err = p.failField(off, s, key, unknownField(key, fieldNames, "see ParsePolicyFile for the fields of a policy"))
		case seen[name] == key:
			err = p.failField(off, s, key, errors.New("given twice"))
		case seen[name] != "":
			err = p.failField(off, s, key, fmt.Errorf("given twice, also as %q", seen[name]))
		}
		if err != nil {
			return nil, err
		}
		raw, valueOff, err := p.value()
		if err != nil {
			return nil, err
		}
		if f == nil || seen[name] != "" {
			continue
		}
		seen[name], offsets[name] = key, valueOff
		if perr := f.parse(s, raw); perr != nil {
			if err := p.failField(valueOff, s, key, perr); err != nil {
				return nil, err
			}
		}
	}
	if _, _, err := p.token(); err != nil {
		return nil, err
	}
	base, baseSet := s.durs["base_delay"]
	if maxd, ok := s.durs["max_delay"]; ok && baseSet && maxd < base {
		if err := p.failField(offsets["max_delay"], s, seen["max_delay"], fmt.Errorf("%v is below base_delay %v", maxd, base)); err != nil {
			return nil, err
		}
	}
	for _, pair := range [][2]string{{"hedge_min_delay", "hedge_max_delay"}, {"learned_timeout_min", "learned_timeout_max"}} {
		lo, loSet := s.durs[pair[0]]
		if hi, ok := s.durs[pair[1]]; ok && loSet && hi < lo {
			if err := p.failField(offsets[pair[1]], s, pair[1], fmt.Errorf("%v is below %s %v", hi, pair[0], lo)); err != nil {
				return nil, err
			}
		}
	}
	var given []string // in the file's order
	for name := range seen {
		given = append(given, name)
	}
	sort.Slice(given, func(i, j int) bool { return offsets[given[i]] < offsets[given[j]] })
	for _, name := range given {
		for _, sw := range switched {
			if strings.HasPrefix(name, sw.prefix) && !s.bools[sw.name] {
				if err := p.failField(offsets[name], s, seen[name], fmt.Errorf("configures %s, which is off: add \"%s\": true", sw.name, sw.name)); err != nil {
					return nil, err
				}
			}
		}
	}
	if !s.bools["hedge"] {
		s.policy.Retry.Hedge = nil
	} else {
		hedgeOf(&s.policy)
	}
	if !s.bools["learned_timeout"] {
		s.policy.Retry.LearnedTimeout = nil
	} else {
		learnedOf(&s.policy)
	}
	if len(p.errs) > errsBefore {
		return nil, nil
	}
	return &s.policy, nil
}

// isNumber reports whether a raw JSON value is a number.
func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9')
}

package rebound

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// PolicyFile is the JSON form of a set of policies, for configuration that
// lives outside the code:
//
//	{
//	  "default": {"max_attempts": 3, "attempt_timeout": "2s"},
//	  "hosts": {
//	    "payments.example.com": {"max_attempts": 2, "retryable_statuses": [429, 503]},
//	    "*.legacy.internal":    {"disable_idempotency_keys": true}
//	  }
//	}
//
// Durations are Go duration strings ("250ms", "1m30s"). Omitted fields keep
// their defaults. Unknown fields, negative durations or counts, and invalid
// host patterns are errors. The zero value is no policy at all.
type PolicyFile struct {
	// Default is the policy of hosts without their own; nil means every
	// default.
	Default *PolicySpec `json:"default,omitempty"`
	// Hosts maps host patterns (see WithHostPolicy) to their policies.
	Hosts map[string]PolicySpec `json:"hosts,omitempty"`
}

// PolicySpec is the JSON form of a Policy: the settings most often tuned
// per host. Each field's zero value (or absence) keeps the default of the
// link it configures.
type PolicySpec struct {
	MaxAttempts       int      `json:"max_attempts,omitempty"`          // transport.Config.MaxAttempts
	BaseDelay         Duration `json:"base_delay,omitempty"`            // transport.Config.BaseDelay
	MaxDelay          Duration `json:"max_delay,omitempty"`             // transport.Config.MaxDelay
	MaxRetryAfter     Duration `json:"max_retry_after,omitempty"`       // transport.Config.MaxRetryAfter
	AttemptTimeout    Duration `json:"attempt_timeout,omitempty"`       // transport.Config.AttemptTimeout
	RetryableStatuses []int    `json:"retryable_statuses,omitempty"`    // classify.Classifier.Retryable
	BudgetRatio       float64  `json:"budget_ratio,omitempty"`          // budget.RatioConfig.Ratio
	BudgetPerSecond   float64  `json:"budget_min_per_second,omitempty"` // budget.RatioConfig.MinPerSecond
	BreakerOpenTime   Duration `json:"breaker_open_timeout,omitempty"`  // breaker.Config.OpenTimeout
	BreakerMinCalls   int      `json:"breaker_min_calls,omitempty"`     // breaker.Config.MinCalls
	BreakerRate       float64  `json:"breaker_failure_rate,omitempty"`  // breaker.Config.FailureRate

	DisableBudget          bool `json:"disable_budget,omitempty"`           // Policy.DisableBudget
	DisableBreaker         bool `json:"disable_breaker,omitempty"`          // Policy.DisableBreaker
	DisableIdempotencyKeys bool `json:"disable_idempotency_keys,omitempty"` // Policy.DisableIdempotencyKeys
	HonorsIdempotencyKeys  bool `json:"honors_idempotency_keys,omitempty"`  // Policy.KeysHonored
}

// Duration is a time.Duration written in JSON as a Go duration string. The
// zero value is zero (the default of the field it sets).
type Duration time.Duration

// UnmarshalJSON parses a duration string such as "1.5s"; negative values
// are an error.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"250ms\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// maxPolicyFile bounds the size of a policy file: configuration, not data.
const maxPolicyFile = 1 << 20

// ParsePolicyFile parses a JSON policy file and returns the options that
// apply it (WithPolicy and one WithHostPolicy per host), or an error that
// names the offending field or host.
func ParsePolicyFile(data []byte) ([]Option, error) {
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("rebound: policy file of %d bytes is over the %d-byte limit", len(data), maxPolicyFile)
	}
	var f PolicyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("rebound: policy file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("rebound: policy file: data after the JSON object")
	}
	var opts []Option
	if f.Default != nil {
		p, err := f.Default.Policy()
		if err != nil {
			return nil, fmt.Errorf("rebound: policy file: default: %w", err)
		}
		opts = append(opts, WithPolicy(p))
	}
	hosts := make([]string, 0, len(f.Hosts))
	for h := range f.Hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		if _, _, err := canonicalPattern(h); err != nil {
			return nil, fmt.Errorf("rebound: policy file: invalid host pattern %q: %w", h, err)
		}
		p, err := f.Hosts[h].Policy()
		if err != nil {
			return nil, fmt.Errorf("rebound: policy file: host %q: %w", h, err)
		}
		opts = append(opts, WithHostPolicy(h, p))
	}
	return opts, nil
}

// LoadPolicyFile reads and parses the JSON policy file at path; see
// ParsePolicyFile.
//
//	opts, err := rebound.LoadPolicyFile("/etc/myservice/rebound.json")
//	if err != nil { ... }
//	client := rebound.NewClient(opts...)
func LoadPolicyFile(path string) ([]Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rebound: %w", err)
	}
	return ParsePolicyFile(data)
}

// Policy returns the Policy that s describes, or an error for an invalid
// value.
func (s PolicySpec) Policy() (Policy, error) {
	switch {
	case s.MaxAttempts < 0:
		return Policy{}, fmt.Errorf("max_attempts %d is negative", s.MaxAttempts)
	case s.MaxAttempts > 100:
		return Policy{}, fmt.Errorf("max_attempts %d is over 100", s.MaxAttempts)
	case s.BudgetRatio < 0 || s.BudgetRatio > 10:
		return Policy{}, fmt.Errorf("budget_ratio %v is outside [0, 10]", s.BudgetRatio)
	case s.BudgetPerSecond < 0:
		return Policy{}, fmt.Errorf("budget_min_per_second %v is negative", s.BudgetPerSecond)
	case s.BreakerMinCalls < 0:
		return Policy{}, fmt.Errorf("breaker_min_calls %d is negative", s.BreakerMinCalls)
	case s.BreakerRate < 0 || s.BreakerRate > 1:
		return Policy{}, fmt.Errorf("breaker_failure_rate %v is outside [0, 1]", s.BreakerRate)
	}
	var p Policy
	p.Retry.MaxAttempts = s.MaxAttempts
	p.Retry.BaseDelay = time.Duration(s.BaseDelay)
	p.Retry.MaxDelay = time.Duration(s.MaxDelay)
	p.Retry.MaxRetryAfter = time.Duration(s.MaxRetryAfter)
	p.Retry.AttemptTimeout = time.Duration(s.AttemptTimeout)
	if s.RetryableStatuses != nil {
		for _, c := range s.RetryableStatuses {
			if c < 100 || c > 599 {
				return Policy{}, fmt.Errorf("retryable status %d is not in [100, 599]", c)
			}
		}
		set := classify.NewStatuses(s.RetryableStatuses...)
		p.Retry.Classifier = &classify.Classifier{Retryable: &set}
	}
	p.Budget.Ratio.Ratio = s.BudgetRatio
	p.Budget.Ratio.MinPerSecond = s.BudgetPerSecond
	p.Breaker.OpenTimeout = time.Duration(s.BreakerOpenTime)
	p.Breaker.MinCalls = s.BreakerMinCalls
	p.Breaker.FailureRate = s.BreakerRate
	p.DisableBudget = s.DisableBudget
	p.DisableBreaker = s.DisableBreaker
	p.DisableIdempotencyKeys = s.DisableIdempotencyKeys
	p.KeysHonored = s.HonorsIdempotencyKeys
	return p, nil
}

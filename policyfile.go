package rebound

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// ParsePolicyFile parses a JSON policy file and returns the options that
// apply it (WithPolicy and one WithHostPolicy per host), or the errors of
// an invalid file, each a *ConfigError with its line and column, the host
// pattern and the JSON field, joined:
//
//	{
//	  "default": {"max_attempts": 3, "attempt_timeout": "2s"},
//	  "hosts": {
//	    "payments.example.com": {"max_attempts": 2, "retryable_statuses": [429, 503]},
//	    "*.legacy.internal":    {"disable_idempotency_keys": true, "base_delay": "0s"}
//	  }
//	}
//
// The file is one object with two optional members: "default", the policy
// of hosts without their own, and "hosts", an object from host patterns
// (see WithHostPolicy) to policies. A policy is an object of the fields
// below; an absent field keeps the default of the setting, a present one
// is taken as written, zero included. Each field is named after the Policy
// setting it sets, in snake case, prefixed with its link ("breaker_",
// "budget_") except for the retry loop's own settings. Durations are Go
// duration strings ("250ms", "1m30s").
//
//	field                       sets                              accepts
//	max_attempts                Retry.MaxAttempts                 1 to 100 (1: no retries)
//	base_delay                  Retry.BaseDelay                   0 to 1m (0: no backoff)
//	max_delay                   Retry.MaxDelay                    0 to 10m, ≥ base_delay (0: no backoff)
//	max_retry_after             Retry.MaxRetryAfter               0 to 1h (0: a wait hint ends the loop)
//	attempt_timeout             Retry.AttemptTimeout              0 to 1h (0: no per-attempt limit)
//	retryable_statuses          Retry.Classifier's Retryable      statuses 400 to 599; [] retries none
//	disable_wait_hints          Retry.DisableWaitHints            true or false
//	disable_pacing              Retry.DisablePacing               true or false
//	disable_adaptive_pace       Retry.DisableAdaptivePace         true or false
//	adaptive_rate               Retry.AdaptiveRate (ignored)      true or false
//	hedge                       Retry.Hedge (on)                  true or false
//	hedge_max                   Retry.Hedge.MaxHedges             1 to 10
//	hedge_delay                 Retry.Hedge.Delay                 0 to 1m (0: learned from the host)
//	hedge_quantile              Retry.Hedge.Quantile              0.5 to 0.999
//	hedge_min_delay             Retry.Hedge.MinDelay              1ms to 1m
//	hedge_max_delay             Retry.Hedge.MaxDelay              1ms to 10m, ≥ hedge_min_delay
//	learned_timeout             Retry.LearnedTimeout (on)         true or false
//	learned_timeout_quantile    Retry.LearnedTimeout.Quantile     0.5 to 0.9999
//	learned_timeout_multiplier  Retry.LearnedTimeout.Multiplier   1 to 100
//	learned_timeout_min         Retry.LearnedTimeout.MinTimeout   1ms to 1h
//	learned_timeout_max         Retry.LearnedTimeout.MaxTimeout   1ms to 1h, ≥ learned_timeout_min
//	budget_ratio                Budget.Ratio.Ratio                0 to 10 (0: only the floor)
//	budget_min_per_second       Budget.Ratio.MinPerSecond         0 to 10000 (0: no floor)
//	budget_window               Budget.Ratio.Window               1ms to 10m
//	budget_per_host             Budget.PerHost                    true or false
//	breaker_open_timeout        Breaker.OpenTimeout               1ms to 10m
//	breaker_min_calls           Breaker.MinCalls                  1 to 100
//	breaker_failure_rate        Breaker.FailureRate               0.01 to 0.8
//	keys_honored                KeysHonored                       true or false
//	trust_caller_keys           TrustCallerKeys                   true or false
//	disable_idempotency_keys    DisableIdempotencyKeys            true or false
//	disable_budget              DisableBudget                     true or false
//	disable_breaker             DisableBreaker                    true or false
//
// (The retry loop is turned off with "max_attempts": 1.) The hedge_ and
// learned_timeout_ fields need "hedge": true and "learned_timeout": true,
// which turn those features on with the defaults of the fields not given.
// The name "honors_idempotency_keys" is accepted for keys_honored. Unknown fields
// (with the closest known name as a hint), values of the wrong type or out
// of range, duplicate fields, host patterns that are invalid or name the
// same hosts as another (after canonicalisation: "API.example.com" and
// "api.example.com." are one), syntax errors, data after the object and
// files over 1 MiB are errors.
func ParsePolicyFile(data []byte) ([]Option, error) {
	return parsePolicyFile("", data)
}

// LoadPolicyFile reads and parses the JSON policy file at path; see
// ParsePolicyFile. Its errors name the file.
//
//	opts, err := rebound.LoadPolicyFile("/etc/myservice/rebound.json")
//	if err != nil { ... }
//	rt, err := rebound.New(nil, opts...)
func LoadPolicyFile(path string) ([]Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rebound: %w", err)
	}
	return parsePolicyFile(path, data)
}

// maxPolicyFile bounds the size of a policy file: configuration, not data.
const maxPolicyFile = 1 << 20

// maxFileErrors bounds the errors reported for one file.
const maxFileErrors = 20

// errStop ends parsing after a syntax error or too many errors.
var errStop = errors.New("stop")

// fileParser walks a policy file token by token, so that it can report
// positions, duplicate members and every error of the file, not only the
// first one.
type fileParser struct {
	path string
	data []byte
	dec  *json.Decoder
	errs []error
}

func parsePolicyFile(path string, data []byte) ([]Option, error) {
	p := &fileParser{path: path, data: data}
	if len(data) > maxPolicyFile {
		p.fail(-1, "", "", fmt.Errorf("%d bytes is over the %d-byte limit of a policy file", len(data), maxPolicyFile))
		return nil, p.err()
	}
	p.dec = json.NewDecoder(bytes.NewReader(data))
	p.dec.UseNumber()
	opts, err := p.file()
	if err == nil && len(p.errs) == 0 {
		return opts, nil
	}
	return nil, p.err()
}

func (p *fileParser) err() error { return errors.Join(p.errs...) }

// fail records an error at byte offset off (where the offending token
// starts, or -1 for no position), in the policy of pattern ("" for the
// default or the file), about field ("" for none). where is the message's
// path. It returns errStop when there are too many errors.
func (p *fileParser) fail(off int64, pattern, where string, err error) error {
	e := &ConfigError{File: p.path, Pattern: pattern, Err: err, where: where, inFile: true}
	if off >= 0 {
		e.Line, e.Column = position(p.data, off)
	}
	p.errs = append(p.errs, e)
	if len(p.errs) >= maxFileErrors {
		return errStop
	}
	return nil
}

// failField is fail for a field of a policy.
func (p *fileParser) failField(off int64, s *specParser, field string, err error) error {
	e := p.fail(off, s.pattern, s.where+"."+field, err)
	p.errs[len(p.errs)-1].(*ConfigError).Field = field
	return e
}

// position returns the 1-based line and column (in bytes) of offset off.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// next returns the offset where the next token starts: after whitespace
// and the separators the decoder consumes with the token.
func (p *fileParser) next() int64 {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

// token reads the next token, recording a syntax error (with errStop).
func (p *fileParser) token() (json.Token, int64, error) {
	off := p.next()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, off, p.syntax(off, err)
	}
	return tok, off, nil
}

// syntax records a decoder error as the file's syntax error.
func (p *fileParser) syntax(off int64, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off = se.Offset
		err = errors.New(se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		off, err = int64(len(p.data)), errors.New("unexpected end of the file")
	}
	p.fail(off, "", "", fmt.Errorf("invalid JSON: %w", err))
	return errStop
}

// value reads one whole JSON value.
func (p *fileParser) value() (json.RawMessage, int64, error) {
	off := p.next()
	var raw json.RawMessage
	if err := p.dec.Decode(&raw); err != nil {
		return nil, off, p.syntax(off, err)
	}
	return raw, off, nil
}

// file parses the top-level object.
func (p *fileParser) file() ([]Option, error) {
	tok, off, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		p.fail(off, "", "", fmt.Errorf("a policy file is a JSON object, not %s", describe(tok)))
		return nil, errStop
	}
	var opts []Option
	var def *Policy
	seen := map[string]bool{}
	var patterns []patternAt
	for p.dec.More() {
		tok, off, err := p.token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if seen[key] {
			if err := p.fail(off, "", key, errors.New("given twice")); err != nil {
				return nil, err
			}
		}
		seen[key] = true
		switch key {
		case "default":
			pol, err := p.policy("", "default")
			if err != nil {
				return nil, err
			}
			def = pol
		case "hosts":
			hs, err := p.hosts()
			if err != nil {
				return nil, err
			}
			patterns = append(patterns, hs...)
		default:
			if err := p.fail(off, "", key, unknownField(key, []string{"default", "hosts"}, "a policy file has only \"default\" and \"hosts\"")); err != nil {
				return nil, err
			}
			if _, _, err := p.value(); err != nil {
				return nil, err
			}
		}
	}
	if _, _, err := p.token(); err != nil { // the closing brace
		return nil, err
	}
	if off := p.next(); off < int64(len(p.data)) {
		p.fail(off, "", "", errors.New("data after the policy object"))
		return nil, errStop
	}
	if def != nil {
		opts = append(opts, WithPolicy(*def))
	}
	for _, h := range patterns {
		if h.policy != nil {
			opts = append(opts, WithHostPolicy(h.pattern, *h.policy))
		}
	}
	return opts, nil
}

// patternAt is a host entry of the file.
type patternAt struct {
	pattern string
	policy  *Policy // nil when invalid
}

// hosts parses the "hosts" object.
func (p *fileParser) hosts() ([]patternAt, error) {
	tok, off, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		if err := p.fail(off, "", "hosts", fmt.Errorf("want an object of host patterns, got %s", describe(tok))); err != nil {
			return nil, err
		}
		return nil, p.skipRest(tok)
	}
	var out []patternAt
	first := map[string]string{} // canonical pattern → first spelling
	for p.dec.More() {
		tok, off, err := p.token()
		if err != nil {
			return nil, err
		}
		pattern := tok.(string)
		where := "hosts[" + strconv.Quote(pattern) + "]"
		name, port, wildcard, perr := canonicalPattern(pattern)
		if perr == nil {
			key := patternKey(name, port, wildcard)
			if f, dup := first[key]; dup {
				perr = duplicatePattern(pattern, f, key)
			} else {
				first[key] = pattern
			}
		} else {
			perr = fmt.Errorf("%w: %w", ErrInvalidPattern, perr)
		}
		if perr != nil {
			if err := p.fail(off, pattern, where, perr); err != nil {
				return nil, err
			}
		}
		pol, err := p.policy(pattern, where)
		if err != nil {
			return nil, err
		}
		if perr != nil {
			pol = nil
		}
		out = append(out, patternAt{pattern, pol})
	}
	_, _, err = p.token()
	return out, err
}

// skipRest skips the rest of a value whose first token was tok.
func (p *fileParser) skipRest(tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok || d == '}' || d == ']' {
		return nil
	}
	for depth := 1; depth > 0; {
		t, _, err := p.token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// describe names a token's JSON type for a message.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// describeRaw names a raw value's JSON type and shows it when short.
func describeRaw(raw json.RawMessage) string {
	kind := "null"
	switch raw[0] {
	case '{':
		kind = "an object"
	case '[':
		kind = "an array"
	case '"':
		kind = "a string"
	case 't', 'f':
		kind = "a boolean"
	case 'n':
		return "null"
	default:
		kind = "a number"
	}
	if len(raw) <= 40 && raw[0] != '{' && raw[0] != '[' {
		return kind + " " + string(raw)
	}
	return kind
}

// unknownField is the error of an unknown member, with the closest known
// name as a hint when there is one within two edits.
func unknownField(key string, known []string, otherwise string) error {
	best, dist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown field; did you mean %q?", best)
	}
	return fmt.Errorf("unknown field; %s", otherwise)
}

// editDistance returns the Levenshtein distance of a and b (bytes), for
// hints about misspelt fields.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// durationString parses a JSON duration value.
func durationString(raw json.RawMessage) (time.Duration, error) {
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return 0, fmt.Errorf("want a duration string such as \"250ms\", got %s", describeRaw(raw))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (such as \"250ms\" or \"1m30s\")", s)
	}
	return d, nil
}

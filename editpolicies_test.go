package rebound_test

import (
	"testing"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// EditPolicies runs after every other option, on the default policy and
// each host policy with its pattern, in the order given; its edits are
// checked like any other setting.
func TestEditPolicies(t *testing.T) {
	var seen []string
	rt, err := rebound.New(nil,
		rebound.EditPolicies(func(pattern string, p *rebound.Policy) {
			seen = append(seen, pattern)
			p.Retry.MaxAttempts++
		}),
		rebound.EditPolicies(nil),
		rebound.WithHostPolicy("api.example.com", rebound.Policy{Retry: transport.Config{MaxAttempts: 2}}),
		rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 5}}),
		rebound.EditPolicies(func(pattern string, p *rebound.Policy) { p.Retry.MaxAttempts *= 10 }),
		rebound.WithHostPolicy("*.example.org", rebound.Policy{}),
	)
	require.NoError(t, err)
	assert.Equal(t, []string{"", "api.example.com", "*.example.org"}, seen)
	for host, want := range map[string]int{"other.test": 60, "api.example.com": 30, "x.example.org": 10} {
		_, p := rt.PolicyFor(host)
		assert.Equal(t, want, p.Retry.MaxAttempts, host)
	}

	_, err = rebound.New(nil,
		rebound.WithHostPolicy("api.example.com", rebound.Policy{}),
		rebound.EditPolicies(func(pattern string, p *rebound.Policy) {
			if pattern != "" {
				p.Retry.AttemptHeader = "bad header"
			}
		}))
	var ce *rebound.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "api.example.com", ce.Pattern)
}

package rebound_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hedging and learned-timeout fields of a policy file set their
// settings; a host policy that says "hedge": true without other fields
// gets the defaults, and "learned_timeout": false leaves it off.
func TestPolicyFileTailFields(t *testing.T) {
	opts, err := rebound.LoadPolicyFile(filepath.Join("testdata", "policyfiles", "valid", "every_field.json"))
	require.NoError(t, err)
	rt, err := rebound.New(nil, opts...)
	require.NoError(t, err)
	_, p := rt.PolicyFor("other.example")
	// PolicyFor gives the values in effect: the defaults fill the rest.
	assert.Equal(t, &transport.HedgeConfig{MaxHedges: 2, Quantile: 0.9, MinDelay: 2 * time.Millisecond, MaxDelay: 500 * time.Millisecond, MinSamples: transport.DefaultHedgeSamples}, p.Retry.Hedge)
	assert.Equal(t, &transport.LearnedTimeoutConfig{Quantile: 0.999, Multiplier: 4, MinTimeout: 300 * time.Millisecond, MaxTimeout: 20 * time.Second, MinSamples: transport.DefaultLearnedSamples}, p.Retry.LearnedTimeout)
	_, p = rt.PolicyFor("svc.legacy.internal")
	assert.Equal(t, &transport.HedgeConfig{MaxHedges: 1, Delay: 25 * time.Millisecond, Quantile: transport.DefaultHedgeQuantile,
		MinDelay: transport.DefaultHedgeMin, MaxDelay: transport.DefaultHedgeMax, MinSamples: transport.DefaultHedgeSamples}, p.Retry.Hedge)
	assert.Nil(t, p.Retry.LearnedTimeout)
	_, p = rt.PolicyFor("payments.example.com")
	assert.Nil(t, p.Retry.Hedge, "a host policy does not inherit the default's fields")
}

// Settings no link can carry out are New's errors, naming the field.
func TestNewRefusesImpossibleTailSettings(t *testing.T) {
	_, err := rebound.New(nil,
		rebound.WithPolicy(rebound.Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{Quantile: 1.5, MinDelay: time.Second, MaxDelay: time.Millisecond}}}),
		rebound.WithHostPolicy("a.example", rebound.Policy{Retry: transport.Config{LearnedTimeout: &transport.LearnedTimeoutConfig{Multiplier: 0.5, Quantile: -1, MinTimeout: time.Minute, MaxTimeout: time.Second}}}),
	)
	require.Error(t, err)
	for _, want := range []string{
		"rebound: WithPolicy: Retry.Hedge.Quantile: 1.5 is not in [0.5, 0.999]",
		"rebound: WithPolicy: Retry.Hedge.MaxDelay: 1ms is below MinDelay 1s",
		`rebound: WithHostPolicy("a.example"): Retry.LearnedTimeout.Quantile: -1 is not in [0.5, 0.9999]`,
		`rebound: WithHostPolicy("a.example"): Retry.LearnedTimeout.Multiplier: 0.5 is not in [1, 100]`,
		`rebound: WithHostPolicy("a.example"): Retry.LearnedTimeout.MaxTimeout: 1s is below MinTimeout 1m0s`,
	} {
		assert.Contains(t, err.Error(), want)
	}
}

// Every numeric field of HedgeConfig and LearnedTimeoutConfig given in
// code is checked by New with the policy file's ranges, and NewTransport
// with one out of range fails every request with that *ConfigError: no
// panic inside RoundTrip (MaxHedges = MaxInt once overflowed into
// make(chan, negative)).
func TestTailSettingsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	for name, c := range map[string]struct {
		hedge   *transport.HedgeConfig
		learned *transport.LearnedTimeoutConfig
		field   string
	}{
		"MaxHedges MaxInt":   {hedge: &transport.HedgeConfig{MaxHedges: math.MaxInt}, field: "Retry.Hedge.MaxHedges"},
		"MaxHedges 11":       {hedge: &transport.HedgeConfig{MaxHedges: 11}, field: "Retry.Hedge.MaxHedges"},
		"MaxHedges -1":       {hedge: &transport.HedgeConfig{MaxHedges: -1}, field: "Retry.Hedge.MaxHedges"},
		"Delay negative":     {hedge: &transport.HedgeConfig{Delay: -time.Second}, field: "Retry.Hedge.Delay"},
		"Delay 2m":           {hedge: &transport.HedgeConfig{Delay: 2 * time.Minute}, field: "Retry.Hedge.Delay"},
		"Quantile NaN":       {hedge: &transport.HedgeConfig{Quantile: math.NaN()}, field: "Retry.Hedge.Quantile"},
		"Quantile 0.1":       {hedge: &transport.HedgeConfig{Quantile: 0.1}, field: "Retry.Hedge.Quantile"},
		"MinDelay 1µs":       {hedge: &transport.HedgeConfig{MinDelay: time.Microsecond}, field: "Retry.Hedge.MinDelay"},
		"MaxDelay 1h":        {hedge: &transport.HedgeConfig{MaxDelay: time.Hour}, field: "Retry.Hedge.MaxDelay"},
		"MinSamples 10000":   {hedge: &transport.HedgeConfig{MinSamples: 10000}, field: "Retry.Hedge.MinSamples"},
		"MinSamples -5":      {hedge: &transport.HedgeConfig{MinSamples: -5}, field: "Retry.Hedge.MinSamples"},
		"learned Quantile 1": {learned: &transport.LearnedTimeoutConfig{Quantile: 1}, field: "Retry.LearnedTimeout.Quantile"},
		"Multiplier Inf":     {learned: &transport.LearnedTimeoutConfig{Multiplier: math.Inf(1)}, field: "Retry.LearnedTimeout.Multiplier"},
		"Multiplier 1000":    {learned: &transport.LearnedTimeoutConfig{Multiplier: 1000}, field: "Retry.LearnedTimeout.Multiplier"},
		"MinTimeout -1s":     {learned: &transport.LearnedTimeoutConfig{MinTimeout: -time.Second}, field: "Retry.LearnedTimeout.MinTimeout"},
		"MaxTimeout 2h":      {learned: &transport.LearnedTimeoutConfig{MaxTimeout: 2 * time.Hour}, field: "Retry.LearnedTimeout.MaxTimeout"},
		"learned MinSamples": {learned: &transport.LearnedTimeoutConfig{MinSamples: 1001}, field: "Retry.LearnedTimeout.MinSamples"},
	} {
		t.Run(name, func(t *testing.T) {
			p := rebound.Policy{Retry: transport.Config{Hedge: c.hedge, LearnedTimeout: c.learned}}
			_, err := rebound.New(nil, rebound.WithPolicy(p))
			var ce *rebound.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, c.field, ce.Field)

			rt := rebound.NewTransport(nil, rebound.WithPolicy(p))
			defer rt.CloseIdleConnections()
			_, err = (&http.Client{Transport: rt}).Get(srv.URL)
			var ce2 *rebound.ConfigError
			require.ErrorAs(t, err, &ce2, "every request fails with the ConfigError")
			assert.Equal(t, c.field, ce2.Field)
		})
	}
	// The bounds themselves are accepted.
	_, err := rebound.New(nil, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{
		Hedge:          &transport.HedgeConfig{MaxHedges: 10, Delay: time.Minute, Quantile: 0.999, MinDelay: time.Millisecond, MaxDelay: 10 * time.Minute, MinSamples: 1000},
		LearnedTimeout: &transport.LearnedTimeoutConfig{Quantile: 0.5, Multiplier: 100, MinTimeout: time.Millisecond, MaxTimeout: time.Hour, MinSamples: 1},
	}}))
	require.NoError(t, err)
}

// Through the whole chain (key, loop, budget, breaker, a real server), a
// first attempt that hangs is overtaken by its hedge.
func TestChainHedgesAHungAttempt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Attempt") == "1" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "hedge "+r.Header.Get("X-Attempt"))
	}))
	defer srv.Close()
	rt, err := rebound.New(nil, rebound.WithPolicy(rebound.Policy{Retry: transport.Config{
		AttemptHeader: "X-Attempt",
		Hedge:         &transport.HedgeConfig{Delay: 20 * time.Millisecond},
	}}))
	require.NoError(t, err)
	defer rt.CloseIdleConnections()
	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "hedge 2", string(b))
}

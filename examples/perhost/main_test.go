package main

import (
	"bytes"
	"testing"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Each host's server sees what its policy allows: a GET as many times as
// its max_attempts; a POST twice only at payments, which declares keys
// honoured, once elsewhere (a 503 to a POST whose generated key nobody
// vouches for is not repeated); the legacy host gets no generated key.
func TestRun(t *testing.T) {
	f := startFleet()
	defer f.close()
	var out bytes.Buffer
	hits, err := run(&out, f, []rebound.Option{reboundtest.NoWait()})
	require.NoError(t, err)
	assert.Equal(t, map[string]Hits{
		"payments.example":       {GET: 2, POST: 2, Keyed: 2},
		"search.example":         {GET: 5, POST: 1, Keyed: 1},
		"billing.legacy.example": {GET: 1, POST: 1, Keyed: 0},
		"other.example":          {GET: 3, POST: 1, Keyed: 1},
	}, hits)
	assert.Contains(t, out.String(), "billing.legacy.example  policy *.legacy.example  max_attempts 1")
}

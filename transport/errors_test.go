package transport_test

import (
	"errors"
	"testing"

	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
)

func TestErrorMessage(t *testing.T) {
	assert.Equal(t, "rebound: 0 attempts", (&transport.Error{}).Error(), "the zero value")
	assert.Equal(t, "rebound: 1 attempt, final outcome (tls): x509: bad",
		(&transport.Error{Attempts: 1, Stop: transport.StopFinal, Reason: "tls", Err: errors.New("x509: bad")}).Error())
	assert.Equal(t, "rebound: 4 attempts, attempts exhausted (connection refused)",
		(&transport.Error{Attempts: 4, Stop: transport.StopAttempts, Reason: "connection refused"}).Error())
}

package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/rebound-http/rebound/classify"
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

func TestErrorTimeoutAndTemporary(t *testing.T) {
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutErr{}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		name               string
		err                *transport.Error
		timeout, temporary bool
	}{
		{"zero value", &transport.Error{}, false, false},
		{"caller's deadline", &transport.Error{Stop: transport.StopFinal, Err: context.DeadlineExceeded}, true, true},
		{"deadline, wrapped", &transport.Error{Stop: transport.StopFinal, Err: fmt.Errorf("read: %w", context.DeadlineExceeded)}, true, true},
		{"attempt timeout", &transport.Error{Stop: transport.StopAttempts, Err: classify.ErrAttemptTimeout}, true, true},
		{"dial timeout", &transport.Error{Stop: transport.StopAttempts, Err: dialTimeout}, true, true},
		{"deadline before next attempt", &transport.Error{Stop: transport.StopDeadline, Err: refused}, true, true},
		{"refused, attempts exhausted", &transport.Error{Stop: transport.StopAttempts, Err: refused}, false, true},
		{"refused by a gate", &transport.Error{Stop: transport.StopRefused, Err: refused}, false, true},
		{"tls, final", &transport.Error{Stop: transport.StopFinal, Err: errors.New("x509: bad")}, false, false},
		{"canceled", &transport.Error{Stop: transport.StopCanceled, Err: context.Canceled}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.timeout, c.err.Timeout(), "Timeout")
			assert.Equal(t, c.temporary, c.err.Temporary(), "Temporary")
			assert.Equal(t, c.timeout, os.IsTimeout(c.err), "os.IsTimeout")
		})
	}
}

// timeoutErr is a net.Error that reports a timeout.
type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

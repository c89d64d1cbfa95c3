package classify_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/net/http2"

	"github.com/rebound-http/rebound/classify"
)

// fromPeer stands for the x/net and net/http sentinel that marks a
// StreamError as sent by the server; only its text is public.
var fromPeer = errors.New("received from peer")

// cannotRetry is the error net/http's HTTP/2 transport returns when it
// would retry cause but the request's body was written and has no GetBody:
// it keeps only the cause's text (%v).
func cannotRetry(cause error) error {
	return fmt.Errorf("http2: Transport: cannot retry err [%v] after Request.Body was written; define Request.GetBody to avoid this error", cause)
}

// TestHTTP2NotProcessed lists the HTTP/2 errors that prove the server did
// not process the stream, and look-alikes that prove nothing. The texts
// are those of net/http's bundled HTTP/2 transport and of x/net's, whose
// error values are unexported; the loopback tests in the root package
// check them against the real transport.
func TestHTTP2NotProcessed(t *testing.T) {
	refused := http2.StreamError{StreamID: 3, Code: http2.ErrCodeRefusedStream, Cause: fromPeer}
	gotGoAway := errors.New("http2: Transport received Server's graceful shutdown GOAWAY")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"REFUSED_STREAM", refused, true},
		{"REFUSED_STREAM, no cause", http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}, true},
		{"REFUSED_STREAM, wrapped", fmt.Errorf("attempt 2: %w", refused), true},
		{"REFUSED_STREAM, joined", errors.Join(io.EOF, refused), true},
		{"graceful GOAWAY", gotGoAway, true},
		{"graceful GOAWAY, wrapped", fmt.Errorf("rt: %w", gotGoAway), true},
		{"GOAWAY with a code, first stream", errors.New("http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM"), true},
		{"GOAWAY with an unknown code", errors.New("http2: Transport received GOAWAY from server ErrCode:unknown error code 0x1f"), true},
		{"connection not usable", errors.New("http2: client conn not usable"), true},
		{"connection not established", errors.New("http2: client conn could not be established"), true},
		{"body written, REFUSED_STREAM", cannotRetry(refused), true},
		{"body written, REFUSED_STREAM, no cause", cannotRetry(http2.StreamError{StreamID: 7, Code: http2.ErrCodeRefusedStream}), true},
		{"body written, graceful GOAWAY", cannotRetry(gotGoAway), true},
		{"body written, connection not usable", cannotRetry(errors.New("http2: client conn not usable")), true},

		{"nil", nil, false},
		{"other stream error", http2.StreamError{StreamID: 3, Code: http2.ErrCodeInternal, Cause: fromPeer}, false},
		{"CANCEL", http2.StreamError{StreamID: 3, Code: http2.ErrCodeCancel, Cause: fromPeer}, false},
		{"body written, PROTOCOL_ERROR from peer", cannotRetry(http2.StreamError{StreamID: 3, Code: http2.ErrCodeProtocol, Cause: fromPeer}), false},
		{"GOAWAY and closed: at or below the last stream id", http2.GoAwayError{LastStreamID: 5, ErrCode: http2.ErrCodeNo}, false},
		{"GOAWAY whose debug data quotes a sentinel", http2.GoAwayError{LastStreamID: 5, DebugData: "http2: client conn not usable"}, false},
		{"GOAWAY whose debug data quotes a refusal", http2.GoAwayError{LastStreamID: 5, DebugData: "stream error: stream ID 1; REFUSED_STREAM"}, false},
		{"sentinel text inside another message", errors.New("proxy: http2: Transport received Server's graceful shutdown GOAWAY"), false},
		{"GOAWAY with a made-up code", errors.New("http2: Transport received GOAWAY from server ErrCode:whatever"), false},
		{"GOAWAY code with trailing text", errors.New("http2: Transport received GOAWAY from server ErrCode:NO_ERROR; more"), false},
		{"refusal text, not a StreamError", errors.New("stream error: stream ID 1; REFUSED_STREAM"), false},
		{"cannot retry, unterminated", errors.New("http2: Transport: cannot retry err [http2: client conn not usable"), false},
		{"cannot retry, refusal text with extras", cannotRetry(errors.New("stream error: stream ID 1; REFUSED_STREAM; later")), false},
		{"cannot retry, bad stream id", cannotRetry(errors.New("stream error: stream ID x; REFUSED_STREAM")), false},
		{"cannot retry, something else", cannotRetry(io.ErrUnexpectedEOF), false},
		{"unexpected EOF", io.ErrUnexpectedEOF, false},
		{"closed connection", errors.New("http2: client connection lost"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classify.NotSent(tt.err))
			if tt.err == nil {
				return
			}
			// Toward the retry loop: a POST without a key may be repeated
			// after exactly these.
			post, _ := http.NewRequest(http.MethodPost, "https://api.example.test/orders", strings.NewReader("{}"))
			v := classify.Classify(post, nil, tt.err)
			assert.Equal(t, tt.want, v.Outcome == classify.Retryable, "verdict %+v", v)
			assert.Equal(t, tt.want, v.NotSent, "verdict %+v", v)
		})
	}
}

// FuzzHTTP2NotProcessed feeds arbitrary error texts to the HTTP/2 rules:
// they never panic, and a text only matches as a whole error of the tree,
// so the same text quoted inside another message (a proxy's, a GOAWAY's
// debug data) never proves anything.
func FuzzHTTP2NotProcessed(f *testing.F) {
	f.Add("http2: Transport received Server's graceful shutdown GOAWAY")
	f.Add("http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM")
	f.Add("http2: Transport: cannot retry err [stream error: stream ID 3; REFUSED_STREAM; received from peer] after Request.Body was written; define Request.GetBody to avoid this error")
	f.Add("stream error: stream ID 1; REFUSED_STREAM")
	f.Fuzz(func(t *testing.T, msg string) {
		got := classify.NotSent(errors.New(msg))
		if got && !strings.HasPrefix(msg, "http2: ") {
			t.Fatalf("%q matched without the http2 prefix", msg)
		}
		if classify.NotSent(fmt.Errorf("proxy: %v", errors.New(msg))) {
			t.Fatalf("%q matched inside another message", msg)
		}
		if got != classify.NotSent(fmt.Errorf("attempt: %w", errors.New(msg))) {
			t.Fatalf("%q: wrapping with %%w changed the verdict", msg)
		}
	})
}

package redisstore

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordLayout(t *testing.T) {
	fp := idempotency.Fingerprint{0xaa, 31: 0xbb}
	v := encodeInFlight(0x0102030405060708, fp)
	require.Len(t, v, headerLen)
	assert.Equal(t, []byte{1, stateInFlight, 1, 2, 3, 4, 5, 6, 7, 8}, v[:prefixLen])
	assert.Equal(t, fp[:], v[prefixLen:])
	assert.Equal(t, recordPrefix(stateInFlight, 0x0102030405060708), v[:prefixLen],
		"the scripts' token check compares exactly these bytes")

	rec, err := decodeRecord(string(v))
	require.NoError(t, err)
	assert.Equal(t, idempotency.Record{Fingerprint: fp, Token: 0x0102030405060708}, rec)

	// A completed record as completeScript builds it.
	resp := &idempotency.Response{Status: 201, Header: http.Header{"A": {"b"}}, Body: []byte("hi")}
	done := string(recordPrefix(stateCompleted, 9)) + string(v[prefixLen:]) + string(encodeResponse(resp))
	rec, err = decodeRecord(done)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), rec.Token)
	assert.Equal(t, fp, rec.Fingerprint)
	assert.Equal(t, resp, rec.Response)
}

func TestEncodeResponse(t *testing.T) {
	tests := []struct {
		name string
		resp idempotency.Response
		want []byte // nil: only check the round trip
	}{
		{"bare", idempotency.Response{Status: 200}, []byte{0, 200, 1, 0}},
		{"empty body", idempotency.Response{Status: 204, Body: []byte{}}, []byte{flagBody, 204, 1, 0}},
		{"not replayable", idempotency.Response{Status: 500, NotReplayable: true}, []byte{flagNotReplayable, 0xf4, 3, 0}},
		{"outcome unknown", idempotency.Response{Status: 500, NotReplayable: true, OutcomeUnknown: true},
			[]byte{flagNotReplayable | flagOutcomeUnknown, 0xf4, 3, 0}},
		{"header", idempotency.Response{Status: 201, Header: http.Header{"A": {"x", ""}}, Body: []byte("ok")},
			[]byte{flagHeader | flagBody, 201, 1, 1, 1, 'A', 2, 1, 'x', 0, 'o', 'k'}},
		{"many headers", idempotency.Response{Status: 999, Header: http.Header{
			"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, strings.Repeat("L", 300): {strings.Repeat("v", 200)},
		}, Body: []byte(strings.Repeat("body", 100))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeResponse(&tt.resp)
			assert.Len(t, b, encodedSize(&tt.resp))
			if tt.want != nil {
				assert.Equal(t, tt.want, b)
			}
			got, err := decodeResponse(string(b))
			require.NoError(t, err)
			assert.Equal(t, &tt.resp, got)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	valid := string(encodeInFlight(7, idempotency.Fingerprint{1}))
	tests := map[string]string{
		"empty":                  "",
		"short":                  valid[:headerLen-1],
		"version 2":              "\x02" + valid[1:],
		"unknown state":          valid[:1] + "\x03" + valid[2:],
		"zero token":             valid[:2] + strings.Repeat("\x00", 8) + valid[prefixLen:],
		"in flight with a tail":  valid + "x",
		"completed, no response": valid[:1] + "\x02" + valid[2:],
		"unknown flag":           completed("\x10\xc8\x01\x00"),
		"status 99":              completed("\x00\x63\x00"),
		"status 1000":            completed("\x00\xe8\x07\x00"),
		"huge status":            completed("\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00"),
		"truncated status":       completed("\x00\xc8"),
		"headers without flag":   completed("\x00\xc8\x01\x01\x01A\x00"),
		"header count too large": completed("\x02\xc8\x01\x7f\x01A"),
		"name overrun":           completed("\x02\xc8\x01\x01\x05A"),
		"value count overrun":    completed("\x02\xc8\x01\x01\x01A\x09"),
		"value overrun":          completed("\x02\xc8\x01\x01\x01A\x01\x04ab"),
		"body without flag":      completed("\x00\xc8\x01\x00body"),
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(v)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
}

// completed returns a completed record of token 7 with response bytes r.
func completed(r string) string {
	return string(recordPrefix(stateCompleted, 7)) + strings.Repeat("\x00", 32) + r
}

func TestMillis(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int64
	}{
		{"negative", -time.Second, 0},
		{"zero", 0, 0},
		{"one nanosecond", 1, 1},
		{"one millisecond", time.Millisecond, 1},
		{"just over", time.Millisecond + 1, 2},
		{"a minute", time.Minute, 60_000},
		{"largest", time.Duration(1<<63 - 1), (1<<63-1-1)/int64(time.Millisecond) + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, millis(tt.d)) })
	}
}

// FuzzDecodeRecord checks that no value read from Redis makes the decoder
// panic, and that whatever it accepts survives a round trip through the
// encoder. (Bytes may differ: a varint need not be minimal, a header name
// may repeat.)
func FuzzDecodeRecord(f *testing.F) {
	fp := idempotency.Fingerprint{5}
	f.Add(string(encodeInFlight(3, fp)))
	f.Add(completed(string(encodeResponse(&idempotency.Response{Status: 201, Header: http.Header{"A": {"b", "c"}}, Body: []byte("x")}))))
	f.Add(completed(string(encodeResponse(&idempotency.Response{Status: 200, NotReplayable: true}))))
	f.Add(completed(string(encodeResponse(&idempotency.Response{Status: 500, NotReplayable: true, OutcomeUnknown: true}))))
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := decodeRecord(v)
		if err != nil {
			return
		}
		if rec.Response == nil {
			assert.Equal(t, v, string(encodeInFlight(rec.Token, rec.Fingerprint)))
			return
		}
		again, err := decodeResponse(string(encodeResponse(rec.Response)))
		require.NoError(t, err)
		assert.Equal(t, rec.Response, again)
	})
}

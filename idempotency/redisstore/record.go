package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/idempotency"
)

// ErrMalformed reports a value under the store's prefix that is not a
// record this package wrote (another program's key, or a newer layout).
// The key is left alone; the middleware answers 503 for it until it expires
// or is deleted.
var ErrMalformed = errors.New("redisstore: malformed record")

// A record is one Redis string:
//
//	offset  size  field
//	0       1     layout version, 1
//	1       1     state: 1 in flight, 2 completed
//	2       8     token, big-endian
//	10      32    fingerprint (SHA-256)
//	42      …     response, completed records only:
//	              flags byte (bit 0 NotReplayable, bit 1 Header non-nil,
//	              bit 2 Body non-nil, bit 3 OutcomeUnknown), uvarint status, uvarint header
//	              count, then per header: uvarint name length, name,
//	              uvarint value count, per value uvarint length and value;
//	              the body fills the rest.
//
// The first 10 bytes (version, state, token) are what the scripts compare
// to check a token, so they never parse the rest.
const (
	layoutVersion  = 1
	stateInFlight  = 1
	stateCompleted = 2
	prefixLen      = 10 // version, state, token
	headerLen      = prefixLen + len(idempotency.Fingerprint{})
)

// Response flags.
const (
	flagNotReplayable = 1 << iota
	flagHeader
	flagBody
	flagOutcomeUnknown
)

// recordPrefix returns the first bytes of a record with state and token.
func recordPrefix(state byte, token uint64) []byte {
	b := make([]byte, prefixLen)
	b[0], b[1] = layoutVersion, state
	binary.BigEndian.PutUint64(b[2:], token)
	return b
}

// encodeInFlight returns the whole value of an in-flight record.
func encodeInFlight(token uint64, fp idempotency.Fingerprint) []byte {
	b := make([]byte, prefixLen, headerLen)
	b[0], b[1] = layoutVersion, stateInFlight
	binary.BigEndian.PutUint64(b[2:], token)
	return append(b, fp[:]...)
}

// encodedSize returns the length of resp's encoding.
func encodedSize(resp *idempotency.Response) int {
	n := 1 + uvarintLen(uint64(resp.Status)) + uvarintLen(uint64(len(resp.Header)))
	for k, vs := range resp.Header {
		n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(vs)))
		for _, v := range vs {
			n += uvarintLen(uint64(len(v))) + len(v)
		}
	}
	return n + len(resp.Body)
}

// encodeResponse returns resp's encoding (the tail of a completed record).
func encodeResponse(resp *idempotency.Response) []byte {
	var flags byte
	if resp.NotReplayable {
		flags |= flagNotReplayable
	}
	if resp.Header != nil {
		flags |= flagHeader
	}
	if resp.Body != nil {
		flags |= flagBody
	}
	if resp.OutcomeUnknown {
		flags |= flagOutcomeUnknown
	}
	b := make([]byte, 1, encodedSize(resp))
	b[0] = flags
	b = binary.AppendUvarint(b, uint64(resp.Status))
	b = binary.AppendUvarint(b, uint64(len(resp.Header)))
	for k, vs := range resp.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(b, resp.Body...)
}

// decodeRecord parses a record's value. Header names and values share v's
// memory; the body is copied.
func decodeRecord(v string) (idempotency.Record, error) {
	var rec idempotency.Record
	if len(v) < headerLen || v[0] != layoutVersion {
		return rec, ErrMalformed
	}
	rec.Token = binary.BigEndian.Uint64([]byte(v[2:prefixLen]))
	copy(rec.Fingerprint[:], v[prefixLen:headerLen])
	if rec.Token == 0 {
		return rec, ErrMalformed
	}
	switch v[1] {
	case stateInFlight:
		if len(v) != headerLen {
			return rec, ErrMalformed
		}
		return rec, nil
	case stateCompleted:
		resp, err := decodeResponse(v[headerLen:])
		rec.Response = resp
		return rec, err
	}
	return rec, ErrMalformed
}

// decodeResponse parses a response's encoding.
func decodeResponse(s string) (*idempotency.Response, error) {
	d := decoder{s: s}
	flags := d.byte()
	if flags&^(flagNotReplayable|flagHeader|flagBody|flagOutcomeUnknown) != 0 {
		return nil, ErrMalformed
	}
	resp := &idempotency.Response{
		NotReplayable:  flags&flagNotReplayable != 0,
		OutcomeUnknown: flags&flagOutcomeUnknown != 0,
	}
	status := d.uvarint()
	if status < 100 || status > 999 {
		return nil, fmt.Errorf("%w: status %d", ErrMalformed, status)
	}
	resp.Status = int(status)
	n := d.count()
	if flags&flagHeader != 0 {
		resp.Header = make(http.Header, n)
	} else if n != 0 {
		return nil, ErrMalformed
	}
	for range n {
		k := d.string()
		vs := make([]string, d.count())
		for i := range vs {
			vs[i] = d.string()
		}
		resp.Header[k] = vs
	}
	if d.err {
		return nil, ErrMalformed
	}
	if flags&flagBody != 0 {
		resp.Body = []byte(d.s)
	} else if d.s != "" {
		return nil, ErrMalformed
	}
	return resp, nil
}

// decoder reads an encoding from the front of s; err records the first
// overrun, after which every read returns zero.
type decoder struct {
	s   string
	err bool
}

func (d *decoder) byte() byte {
	if d.err || d.s == "" {
		d.err = true
		return 0
	}
	b := d.s[0]
	d.s = d.s[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	var x uint64
	for shift := 0; shift < 64; shift += 7 {
		b := d.byte()
		if d.err {
			return 0
		}
		x |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return x
		}
	}
	d.err = true
	return 0
}

// count reads a number of items, each of which takes at least one byte,
// so a corrupt count cannot make the caller allocate more than s holds.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.err = true
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.s)) {
		d.err = true
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// millis returns d in whole milliseconds, rounded up so that a positive
// duration never becomes zero; zero or negative gives 0.
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d-1)/time.Millisecond) + 1
}

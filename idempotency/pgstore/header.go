package pgstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
)

// ErrMalformed reports a row whose header column this package cannot
// decode (written by another program, or corrupt). The middleware answers
// 503 for its key until the row expires or is deleted.
var ErrMalformed = errors.New("pgstore: malformed record")

// A header column holds, in order: a uvarint count of names, then for
// each name a uvarint length and its bytes, a uvarint count of values, and
// for each value a uvarint length and its bytes. Names are written in the
// order the map yields them; the bytes are kept exactly (a header value
// may hold any octet, which JSON would not keep). A nil header is a NULL
// column, an empty one a single zero byte.

// encodeHeader returns h encoded for the header column, or nil for a nil h.
func encodeHeader(h http.Header) []byte {
	if h == nil {
		return nil
	}
	n := binary.MaxVarintLen64
	for k, vs := range h {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(h)))
	for k, vs := range h {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

// decodeHeader decodes a header column; nil gives a nil header. It never
// allocates more than a small multiple of len(b), whatever the counts in b
// claim.
func decodeHeader(b []byte) (http.Header, error) {
	if b == nil {
		return nil, nil
	}
	d := decoder{b: b}
	names := d.count()
	h := make(http.Header, names)
	for range names {
		k := d.bytes()
		nv := d.count()
		if d.err != nil {
			break
		}
		if _, dup := h[string(k)]; dup {
			d.fail("header %q twice", k)
			break
		}
		vs := make([]string, nv)
		for i := range vs {
			vs[i] = string(d.bytes())
		}
		h[string(k)] = vs
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the last header", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return h, nil
}

// decoder reads uvarint-framed fields, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

// fail records an error, unless one is recorded already.
func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: header: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

// uvarint reads one uvarint; 0 after an error.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items that each take at least one byte, so a
// count above the bytes left is an error rather than a huge allocation.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail("count %d over the %d bytes left", v, len(d.b))
		return 0
	}
	return int(v)
}

// bytes reads a length-prefixed field.
func (d *decoder) bytes() []byte {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail("length %d over the %d bytes left", v, len(d.b))
		return nil
	}
	out := d.b[:v]
	d.b = d.b[v:]
	return out
}

package idempotency_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseKey(t *testing.T) {
	long := strings.Repeat("k", idempotency.DefaultMaxKeyLength)
	tests := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"bare uuid", "8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"quoted", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"spaces around", " \tabc\t ", "abc", nil},
		{"quoted with space inside", `"a b"`, "a b", nil},
		{"escaped quote", `"a\"b"`, `a"b`, nil},
		{"escaped backslash", `"a\\b"`, `a\b`, nil},
		{"bare token chars", "order:42/v1", "order:42/v1", nil},
		{"longest bare", long, long, nil},
		{"longest quoted", `"` + long + `"`, long, nil},
		{"escapes count once", `"` + strings.Repeat(`\\`, 255) + `"`, strings.Repeat(`\`, 255), nil},

		{"empty", "", "", idempotency.ErrKeyEmpty},
		{"blank", "  \t ", "", idempotency.ErrKeyEmpty},
		{"empty quoted", `""`, "", idempotency.ErrKeyEmpty},
		{"too long bare", long + "k", "", idempotency.ErrKeyTooLong},
		{"too long quoted", `"` + long + `k"`, "", idempotency.ErrKeyTooLong},
		{"bare with space", "a b", "", idempotency.ErrKeyInvalid},
		{"bare with quote", `a"b`, "", idempotency.ErrKeyInvalid},
		{"bare with backslash", `a\b`, "", idempotency.ErrKeyInvalid},
		{"bare with comma", "a,b", "", idempotency.ErrKeyInvalid},
		{"bare control", "a\x01b", "", idempotency.ErrKeyInvalid},
		{"bare DEL", "a\x7fb", "", idempotency.ErrKeyInvalid},
		{"bare non-ascii", "clé", "", idempotency.ErrKeyInvalid},
		{"unterminated", `"abc`, "", idempotency.ErrKeyInvalid},
		{"lone quote", `"`, "", idempotency.ErrKeyInvalid},
		{"trailing after string", `"abc"x`, "", idempotency.ErrKeyInvalid},
		{"parameters", `"abc";a=1`, "", idempotency.ErrKeyInvalid},
		{"two strings", `"a", "b"`, "", idempotency.ErrKeyInvalid},
		{"bad escape", `"a\nb"`, "", idempotency.ErrKeyInvalid},
		{"escape at end", `"a\`, "", idempotency.ErrKeyInvalid},
		{"quoted control", "\"a\tb\"", "", idempotency.ErrKeyInvalid},
		{"quoted non-ascii", `"clé"`, "", idempotency.ErrKeyInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := idempotency.ParseKey(tt.in)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseKeyDoesNotAllocate(t *testing.T) {
	for _, in := range []string{"8e03978e-40d5-43e8-bc93-6894a57f9324", `"8e03978e-40d5"`} {
		allocs := testing.AllocsPerRun(100, func() { _, _ = idempotency.ParseKey(in) })
		assert.Zero(t, allocs, in)
	}
}

// FuzzParseKey checks that ParseKey never panics and that what it accepts
// is a valid key: non-empty, at most 255 printable ASCII bytes, and
// accepted again (unchanged) once quoted.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, `"a\\"`, "", `"`, `"\`, "a b", " \"x\" "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		key, err := idempotency.ParseKey(in)
		if err != nil {
			if !errors.Is(err, idempotency.ErrKeyEmpty) && !errors.Is(err, idempotency.ErrKeyTooLong) &&
				!errors.Is(err, idempotency.ErrKeyInvalid) {
				t.Fatalf("ParseKey(%q): unexpected error %v", in, err)
			}
			if key != "" {
				t.Fatalf("ParseKey(%q) = %q with error", in, key)
			}
			return
		}
		if key == "" || len(key) > idempotency.DefaultMaxKeyLength || !utf8.ValidString(key) {
			t.Fatalf("ParseKey(%q) = %q: invalid key accepted", in, key)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < ' ' || key[i] > '~' {
				t.Fatalf("ParseKey(%q) = %q: byte %#x accepted", in, key, key[i])
			}
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		again, err := idempotency.ParseKey(quoted)
		if err != nil || again != key {
			t.Fatalf("ParseKey(%q) = %q, %v; want %q (round trip of %q)", quoted, again, err, key, in)
		}
	})
}

func TestNewKeys(t *testing.T) {
	tests := []struct {
		name    string
		gen     func() string
		version uuid.Version
	}{
		{"v4", idempotency.NewKeyV4, 4},
		{"v7", idempotency.NewKeyV7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(map[string]bool)
			prev := ""
			for range 2000 { // several pool refills
				k := tt.gen()
				u, err := uuid.Parse(k)
				require.NoError(t, err, k)
				assert.Equal(t, tt.version, u.Version())
				assert.Equal(t, uuid.RFC4122, u.Variant())
				assert.Len(t, k, 36)
				assert.False(t, seen[k], "duplicate key %s", k)
				seen[k] = true
				if tt.version == 7 {
					assert.Greater(t, k, prev, "v7 keys from one process increase")
				}
				prev = k
				got, err := idempotency.ParseKey(k)
				require.NoError(t, err)
				assert.Equal(t, k, got)
			}
		})
	}
}

func TestNewKeyV4Allocations(t *testing.T) {
	assert.LessOrEqual(t, testing.AllocsPerRun(1000, func() { _ = idempotency.NewKeyV4() }), 1.0)
}

package rebound_test

import (
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the .err files of testdata/policyfiles/invalid")

func TestLoadPolicyFileRoutesHosts(t *testing.T) {
	opts, err := rebound.LoadPolicyFile(filepath.Join("testdata", "policies.json"))
	require.NoError(t, err)
	base := &countingBase{hits: map[string]int{}}
	rt, err := rebound.New(base, opts...)
	require.NoError(t, err)
	tests := []struct {
		name, method, url string
		status            int
		wantHits          int
		wantKey           bool
	}{
		{"default: 3 attempts", http.MethodGet, "http://api.example.com/", 502, 3, false},
		{"payments: 2 attempts", http.MethodGet, "http://payments.example.com/", 503, 2, false},
		{"payments: 502 is not retryable there", http.MethodGet, "http://payments.example.com/x", 502, 1, false},
		{"legacy: POST gets no key, so no retry", http.MethodPost, "http://billing.legacy.internal/", 502, 1, false},
		{"legacy, trailing dot: the same policy", http.MethodPost, "http://billing.legacy.internal./", 502, 1, false},
		{"default: POST gets a key, which licenses no retry", http.MethodPost, "http://orders.example.com/", 502, 1, true},
	}
	for _, tt := range tests {
		// Virtual time: the file's real backoff costs no wall-clock time.
		synctest.Test(t, func(t *testing.T) {
			base.reset(tt.status)
			req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(""))
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.wantHits, base.count(req.URL.Host+req.URL.Path), tt.name)
			assert.Equal(t, tt.wantKey, idempotency.ResponseKey(resp) != "", tt.name)
		})
	}
}

// Every valid sample parses and builds a chain.
func TestPolicyFileValidSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "policyfiles", "valid", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range append(files, filepath.Join("testdata", "policies.json")) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			opts, err := rebound.LoadPolicyFile(f)
			require.NoError(t, err)
			_, err = rebound.New(nil, opts...)
			require.NoError(t, err)
		})
	}
}

// Every invalid sample is refused with the message of its .err file: the
// line and column, the host pattern and the JSON field, and what is wrong.
// Run with -update to rewrite the .err files, then review them.
func TestPolicyFileInvalidSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "policyfiles", "invalid", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			opts, err := rebound.ParsePolicyFile(data)
			require.Error(t, err)
			assert.Nil(t, opts)
			golden := strings.TrimSuffix(f, ".json") + ".err"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644))
			}
			want, rerr := os.ReadFile(golden)
			require.NoError(t, rerr)
			assert.Equal(t, strings.TrimSuffix(string(want), "\n"), err.Error())
			// Each error is a *ConfigError with a position; one in a host's
			// entry names its pattern.
			for _, e := range unjoin(err) {
				var ce *rebound.ConfigError
				require.ErrorAs(t, e, &ce)
				assert.Positive(t, ce.Line, "%v", e)
				assert.Positive(t, ce.Column, "%v", e)
				if strings.Contains(e.Error(), "hosts[") {
					assert.NotEmpty(t, ce.Pattern, "%v", e)
				}
			}
		})
	}
}

// unjoin returns the errors an errors.Join holds, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestPolicyFileFieldsSetTheirSettings(t *testing.T) {
	opts, err := rebound.LoadPolicyFile(filepath.Join("testdata", "policyfiles", "valid", "every_field.json"))
	require.NoError(t, err)
	rt, err := rebound.New(nil, opts...)
	require.NoError(t, err)

	pattern, p := rt.PolicyFor("other.example")
	assert.Equal(t, "", pattern)
	assert.Equal(t, 3, p.Retry.MaxAttempts)
	assert.Equal(t, 50*time.Millisecond, p.Retry.BaseDelay)
	assert.Equal(t, 5*time.Second, p.Retry.MaxDelay)
	assert.Equal(t, 30*time.Second, p.Retry.MaxRetryAfter)
	assert.Equal(t, 2*time.Second, p.Retry.AttemptTimeout)
	require.NotNil(t, p.Retry.Classifier)
	for code, want := range map[int]bool{429: true, 502: true, 503: true, 500: false, 504: false} {
		assert.Equal(t, want, p.Retry.Classifier.Retryable.Has(code), "status %d", code)
	}
	assert.Equal(t, 0.1, p.Budget.Ratio.Ratio)
	assert.Equal(t, 5.0, p.Budget.Ratio.MinPerSecond)
	assert.Equal(t, 30*time.Second, p.Budget.Ratio.Window)
	assert.True(t, p.Budget.PerHost)
	assert.Equal(t, 10*time.Second, p.Breaker.OpenTimeout)
	assert.Equal(t, 50, p.Breaker.MinCalls)
	assert.Equal(t, 0.6, p.Breaker.FailureRate)
	assert.True(t, p.TrustCallerKeys)

	for host, want := range map[string]string{
		"payments.example.com":  "payments.example.com",
		"svc.legacy.internal.":  "*.legacy.internal",
		"xn--bcher-kva.example": "bücher.example",
		"[0:0::1]:8080":         "[::1]",
	} {
		pattern, _ := rt.PolicyFor(host)
		assert.Equal(t, want, pattern, host)
	}
	_, p = rt.PolicyFor("payments.example.com")
	assert.True(t, p.KeysHonored)
	_, p = rt.PolicyFor("svc.legacy.internal")
	assert.True(t, p.DisableIdempotencyKeys)

	opts, err = rebound.LoadPolicyFile(filepath.Join("testdata", "policyfiles", "valid", "alias.json"))
	require.NoError(t, err)
	rt, err = rebound.New(nil, opts...)
	require.NoError(t, err)
	_, p = rt.PolicyFor("api.example.com")
	assert.True(t, p.KeysHonored, "honors_idempotency_keys is accepted for keys_honored")
}

// A zero written in the file is zero: no backoff, no server wait, no
// budget, no retryable status; and every link can be turned off.
func TestPolicyFileZeroWaitsAndLinksOff(t *testing.T) {
	opts, err := rebound.LoadPolicyFile(filepath.Join("testdata", "policyfiles", "valid", "zero_waits_and_links_off.json"))
	require.NoError(t, err)

	// Connection resets after the request: GETs are retried.
	synctest.Test(t, func(t *testing.T) {
		base := &flakyBase{}
		rt, err := rebound.New(base, opts...)
		require.NoError(t, err)
		send := func(method, url string) {
			base.reset()
			req, _ := http.NewRequest(method, url, strings.NewReader("x"))
			_, err := rt.RoundTrip(req)
			require.Error(t, err)
		}
		start := time.Now()
		for _, url := range []string{"http://default.example/", "http://nodelay.example/"} {
			send(http.MethodGet, url)
			assert.Equal(t, 4, base.calls(), url)
			assert.Zero(t, time.Since(start), "%s: base_delay or max_delay 0s is no backoff", url)
		}

		send(http.MethodGet, "http://nobudget.example/")
		assert.Equal(t, 1, base.calls(), "budget_ratio 0 and budget_min_per_second 0 allow no retry")

		send(http.MethodPost, "http://off.example/")
		assert.Equal(t, 1, base.calls())
		assert.False(t, base.wasKeyed(), "disable_idempotency_keys")
		_, ok := rt.RetryBalance("off.example")
		assert.False(t, ok, "disable_budget")
		for _, s := range rt.Breakers() {
			assert.NotEqual(t, "off.example", s.Host, "disable_breaker")
		}
	})

	// 503 with Retry-After: 1.
	synctest.Test(t, func(t *testing.T) {
		base := &countingBase{hits: map[string]int{}}
		rt, err := rebound.New(hintBase{base}, opts...)
		require.NoError(t, err)
		for _, tt := range []struct {
			host string
			want int
		}{
			{"default.example", 4},  // the hint is honoured: waits of a second
			{"nohint.example", 1},   // max_retry_after 0s: the hint ends the loop
			{"nostatus.example", 1}, // retryable_statuses []: 503 is final
		} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+tt.host+"/", nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.want, base.count(tt.host+"/"), tt.host)
		}
	})
}

func TestLoadPolicyFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rebound.json")
	require.NoError(t, os.WriteFile(path, []byte("{\n  \"default\": {\"max_attempts\": 200}\n}\n"), 0o644))
	_, err := rebound.LoadPolicyFile(path)
	require.Error(t, err)
	assert.Equal(t, "rebound: "+path+" line 2, column 31: default.max_attempts: 200 is not in [1, 100]", err.Error())
	var ce *rebound.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, path, ce.File)
	assert.Equal(t, "max_attempts", ce.Field)
	assert.Equal(t, "", ce.Pattern)
}

func TestLoadPolicyFileMissing(t *testing.T) {
	_, err := rebound.LoadPolicyFile(filepath.Join(t.TempDir(), "nope.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestParsePolicyFileTooLarge(t *testing.T) {
	_, err := rebound.ParsePolicyFile([]byte(`{"hosts": {` + strings.Repeat(" ", 1<<20) + `}}`))
	require.Error(t, err)
	assert.Equal(t, "rebound: policy file: 1048589 bytes is over the 1048576-byte limit of a policy file", err.Error())
}

func TestParsePolicyFileStopsAfterTwentyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"hosts": {`)
	for i := range 30 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"h` + string(rune('a'+i%26)) + strings.Repeat("x", i) + `.example": {"max_attempts": 0}`)
	}
	b.WriteString(`}}`)
	_, err := rebound.ParsePolicyFile([]byte(b.String()))
	require.Error(t, err)
	assert.Len(t, unjoin(err), 20)
}

func FuzzParsePolicyFile(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "policyfiles", "*", "*.json"))
	require.NoError(f, err)
	for _, s := range append(seeds, filepath.Join("testdata", "policies.json")) {
		data, err := os.ReadFile(s)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := rebound.ParsePolicyFile(data)
		if err != nil {
			if opts != nil {
				t.Fatalf("options returned with an error")
			}
			for _, e := range unjoin(err) {
				var ce *rebound.ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("error %v is not a *ConfigError", e)
				}
			}
			return
		}
		// A file that parses always builds a chain that answers. Virtual
		// time: a tiny attempt_timeout makes every attempt time out, and
		// the file's backoff is then waited for.
		synctest.Test(t, func(t *testing.T) {
			rt, err := rebound.New(&countingBase{status: http.StatusOK, hits: map[string]int{}}, opts...)
			if err != nil {
				t.Fatalf("accepted file, refused options: %v", err)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://fuzz.example/", nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			} else if errors.Is(err, rebound.ErrInvalidPattern) || errors.Is(err, rebound.ErrDuplicatePattern) {
				t.Fatalf("accepted file, failing chain: %v", err)
			}
		})
	})
}

// flakyBase resets every connection after the request, counting the attempts and whether
// the last one carried an idempotency key.
type flakyBase struct {
	mu    sync.Mutex
	n     int
	keyed bool
}

func (b *flakyBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.keyed = false
	for name := range req.Header {
		if strings.EqualFold(name, "Idempotency-Key") {
			b.keyed = true
		}
	}
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

func (b *flakyBase) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *flakyBase) reset() {
	b.mu.Lock()
	b.n, b.keyed = 0, false
	b.mu.Unlock()
}

// hintBase answers 503 with Retry-After: 1 through a countingBase.
type hintBase struct{ *countingBase }

func (h hintBase) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.countingBase.RoundTrip(req)
	if err == nil {
		resp.StatusCode = http.StatusServiceUnavailable
		resp.Header = http.Header{"Retry-After": {"1"}}
	}
	return resp, err
}

func (b *flakyBase) wasKeyed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keyed
}

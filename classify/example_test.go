package classify_test

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rebound-http/rebound/classify"
)

func ExampleClassify() {
	get, _ := http.NewRequest(http.MethodGet, "https://api.example.test/items", nil)
	post, _ := http.NewRequest(http.MethodPost, "https://api.example.test/orders", strings.NewReader("{}"))

	unavailable := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}}
	fmt.Println("GET 503: ", classify.Classify(get, unavailable, nil).Outcome)
	fmt.Println("POST 503:", classify.Classify(post, unavailable, nil).Outcome)

	// With an idempotency key the server deduplicates, so a POST is safe to repeat.
	post.Header.Set("Idempotency-Key", "7f1c0a52")
	v := classify.Classify(post, unavailable, nil)
	fmt.Printf("POST 503 with a key: %s (%s)\n", v.Outcome, v.Reason)

	// A gate's refusal: the request never left; the retry loop stops there.
	v = classify.Classify(get, nil, &classify.NotSentError{Msg: "breaker: circuit open"})
	fmt.Printf("refused: %s (%s), not sent: %v\n", v.Outcome, v.Reason, v.NotSent)
	// Output:
	// GET 503:  retryable
	// POST 503: final
	// POST 503 with a key: retryable (status 503)
	// refused: final (not sent), not sent: true
}

func ExampleClassifier() {
	// Retry 500 and 503 only; 429 is then final like any other status.
	retryable := classify.NewStatuses(http.StatusInternalServerError, http.StatusServiceUnavailable)
	c := classify.Classifier{Retryable: &retryable}

	get, _ := http.NewRequest(http.MethodGet, "https://api.example.test/items", nil)
	for _, code := range []int{200, 429, 500, 502} {
		v := c.Classify(get, &http.Response{StatusCode: code, Header: http.Header{}}, nil)
		fmt.Println(code, v.Outcome, v.Reason)
	}
	// Output:
	// 200 success ok
	// 429 final status 429
	// 500 retryable status 500
	// 502 final status 502
}

func ExampleServerHealth() {
	get, _ := http.NewRequest(http.MethodGet, "https://api.example.test/items", nil)
	for _, code := range []int{200, 429, 503} {
		fmt.Println(code, classify.ServerHealth(get, &http.Response{StatusCode: code}, nil))
	}
	fmt.Println("refused", classify.ServerHealth(get, nil, classify.ErrNotSent))
	// Output:
	// 200 healthy
	// 429 healthy
	// 503 unhealthy
	// refused neutral
}

func ExampleWaitHint() {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

	seconds := http.Header{}
	seconds.Set("Retry-After", "120")
	d, ok := classify.WaitHint(seconds, now)
	fmt.Println(d, ok)

	// An HTTP-date is measured against the server's Date header, so a
	// server clock 10 minutes behind ours still means "in 2 minutes".
	date := http.Header{}
	date.Set("Date", "Sat, 28 Nov 2026 11:50:00 GMT")
	date.Set("Retry-After", "Sat, 28 Nov 2026 11:52:00 GMT")
	d, ok = classify.WaitHint(date, now)
	fmt.Println(d, ok)

	// Without Retry-After, the RateLimit header's t parameter.
	limited := http.Header{}
	limited.Set("RateLimit", `"default";r=0;t=30`)
	d, ok = classify.WaitHint(limited, now)
	fmt.Println(d, ok)

	// Malformed values are ignored: the retry loop falls back to backoff.
	bad := http.Header{}
	bad.Set("Retry-After", "-5")
	d, ok = classify.WaitHint(bad, now)
	fmt.Println(d, ok)
	// Output:
	// 2m0s true
	// 2m0s true
	// 30s true
	// 0s false
}

func ExampleIdempotent() {
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodPost} {
		req, _ := http.NewRequest(method, "https://api.example.test/orders/42", nil)
		fmt.Println(method, classify.Idempotent(req))
	}
	req, _ := http.NewRequest(http.MethodPost, "https://api.example.test/orders", nil)
	req.Header.Set("Idempotency-Key", "7f1c0a52")
	fmt.Println("POST with Idempotency-Key", classify.Idempotent(req))
	// Output:
	// GET true
	// PUT true
	// POST false
	// POST with Idempotency-Key true
}

package admission

import (
	"errors"
	"strconv"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// Limit names what limits a key's turns. The zero value is LimitNone.
type Limit uint8

const (
	// LimitNone: nothing limits the key.
	LimitNone Limit = iota
	// LimitHint: the server's wait hint paused the key (Retry-After and
	// friends, while it admitted nothing).
	LimitHint
	// LimitQuota: the server's announced quota (RateLimit,
	// X-RateLimit-*) paces the key, or is spent until its reset.
	LimitQuota
	// LimitPace: rebound's own pace, learned from the server's throttling
	// while it admitted other requests.
	LimitPace
)

// String returns "none", "server wait hint", "server quota" or
// "adaptive pace": the words logs and metrics use.
func (l Limit) String() string {
	switch l {
	case LimitNone:
		return "none"
	case LimitHint:
		return "server wait hint"
	case LimitQuota:
		return "server quota"
	case LimitPace:
		return "adaptive pace"
	}
	return "limit(" + strconv.Itoa(int(l)) + ")"
}

// Sentinels matched, with errors.Is, by a *RefusedError: ErrNotAdmitted
// by every one, the others by those of their Limit. Each also matches
// classify.ErrNotSent.
var (
	// ErrNotAdmitted: any refusal of a turn.
	ErrNotAdmitted error = &classify.NotSentError{Msg: "admission: no turn before the call's deadline"}
	// ErrHint: the server asked for a pause longer than the call can wait.
	ErrHint error = &classify.NotSentError{Msg: "admission: host paused by the server's wait hint"}
	// ErrQuota: the server's announced quota gives the call no turn before
	// its deadline.
	ErrQuota error = &classify.NotSentError{Msg: "admission: host paced by the server's quota"}
	// ErrPace: rebound's own pace, learned from the server's throttling,
	// gives the call no turn before its deadline.
	ErrPace error = &classify.NotSentError{Msg: "admission: host paced by rebound after the server throttled"}
)

// RefusedError is the error of a turn refused before anything was sent:
// the key's next free turn comes after the call's deadline, or later than
// Config.MaxWait. Its message is the same for every refusal of one Limit
// (times are in the fields), so errors group. The zero value reads as a
// refusal of an unnamed host with LimitNone.
type RefusedError struct {
	// Host is the canonical host ("api.example.com:8443").
	Host string
	// Limit is what limits the key.
	Limit Limit
	// Wait is how long the call would have waited for its turn.
	Wait time.Duration
	// Ahead is how many calls were waiting for a turn before this one.
	Ahead int
}

// Error returns a message such as "admission: api.example.com paced by the
// server's quota: no turn before the call's deadline (raise the deadline,
// or send less)".
func (e *RefusedError) Error() string {
	what := "limited"
	advice := ""
	switch e.Limit {
	case LimitHint:
		what, advice = "paused by the server's wait hint", "the server asked for a pause; retry after it"
	case LimitQuota:
		what, advice = "paced by the server's quota", "the server's quota is spent at this rate; send less or raise the deadline"
	case LimitPace:
		what, advice = "paced by rebound after the server throttled", "the server throttles this rate; send less or raise the deadline"
	}
	msg := "admission: " + e.Host + " " + what + ": no turn before the call's deadline"
	if advice != "" {
		msg += " (" + advice + ")"
	}
	return msg
}

// Is reports whether target is the sentinel of e's Limit or
// classify.ErrNotSent.
func (e *RefusedError) Is(target error) bool {
	switch target {
	case classify.ErrNotSent, ErrNotAdmitted:
		return true
	case ErrHint:
		return e.Limit == LimitHint
	case ErrQuota:
		return e.Limit == LimitQuota
	case ErrPace:
		return e.Limit == LimitPace
	}
	return false
}

// LimitOf returns the Limit of the *RefusedError in err's chain, or
// LimitNone.
func LimitOf(err error) Limit {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Limit
	}
	return LimitNone
}

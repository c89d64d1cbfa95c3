//go:build unix

package idempotency_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process has used, user and system. A
// benchmark that reports it per operation ("cpu-ns/op") is far less
// sensitive than its wall time to other load on a shared machine.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

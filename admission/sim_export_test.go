package admission

import "time"

// SimState is what the simulation (sim_test.go) reads of an Admission's
// keys after a run: how many states it keeps, and, summed over them, the
// turns queued and in flight and the keys still paused. All zero but
// States is the idle state a run must return to.
type SimState struct {
	States, Queued, Inflight, Paused int
	// Paced is the number of keys with a learned pace in force.
	Paced int
}

// SimStateForTest reads a's keys under its lock. Read-only.
func (a *Admission) SimStateForTest() SimState {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := SimState{States: a.n}
	for _, h := range a.hosts {
		for _, st := range h.creds {
			s.Queued += len(st.queue)
			s.Inflight += st.inflight
			if p, _ := st.pause(); p.After(now) {
				s.Paused++
			}
			if st.rate > 0 {
				s.Paced++
			}
		}
	}
	return s
}

// SimPaceForTest returns the learned pace of the only key a holds (0 with
// none, or more than one), its quota pace and its queue length.
func (a *Admission) SimPaceForTest() (rate, quota float64, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.hosts {
		for _, st := range h.creds {
			return st.rate, st.quotaRate, len(st.queue)
		}
	}
	return 0, 0, 0
}

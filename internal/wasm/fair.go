package wasm

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Guest slots are shared between apps by weighted fair queuing on recent
// CPU time (see RATIONALE.md, "Fair shares of guest slots"):
//
//   - uncontended, a slot is one atomic compare-and-swap to take and one
//     atomic add to give back, plus one atomic add charging the run's CPU
//     time to its app;
//   - when every slot is taken, a run waits in its app's queue (FIFO within
//     the app); a slot that frees goes straight to the head of the queue of
//     the waiting app with the least recent CPU time divided by its weight,
//     never to a newcomer, so one app's queue never holds another's runs;
//   - recent CPU time decays exponentially (time constant FairDecay);
//   - a guest that holds its slot for longer than FairSlice while a run of
//     an app with less recent CPU time per weight waits gives the slot up
//     at its next yield point and waits at the head of its own app's queue:
//     a CPU-bound app cannot hold the slots for its whole CPU limit while a
//     light app's requests queue behind it.

// FairDecay is the time constant of the exponential decay of an app's
// recent CPU time.
const FairDecay = time.Second

// FairSlice is how long a guest may keep its slot while a run of an app
// with less recent CPU time per weight waits.
var FairSlice = 500 * time.Microsecond

// A run still executing guest code after FairSlice is CPU-bound; most runs
// end within tens of microseconds. While such short runs keep ending, a
// CPU-bound run leaves its P at every yield point (runtime.Gosched): the
// goroutines waiting on that P (reading requests, writing responses, the
// gateway, other apps' short runs) go first, and the CPU-bound run has the
// P whenever none wait. Priority inside the process only: unlike a thread's
// nice value, it does not rank the run below the host's other processes
// (RATIONALE.md, "CPU-bound runs leave their P").

// shortRunAt is when a short run last ended (unix ns, to the millisecond).
var shortRunAt atomic.Int64

// shortRunWindow is how recent a short run must be for CPU-bound runs to
// give way.
const shortRunWindow = 10 * time.Millisecond

// noteShortRun records that a short run ended at t; most calls only load.
func noteShortRun(t time.Time) {
	if n := t.UnixNano(); n-shortRunAt.Load() > int64(time.Millisecond) {
		shortRunAt.Store(n)
	}
}

// shortRunsActive reports whether a short run ended within the window.
func shortRunsActive(now time.Time) bool {
	return now.UnixNano()-shortRunAt.Load() < int64(shortRunWindow)
}

// share is an app's account with the guest slots.
type share struct {
	name    string
	pending atomic.Int64 // ns of CPU time charged but not folded into used yet

	// under fairSlots.mu
	weight float64
	used   float64 // decayed ns of CPU time, as of at
	at     time.Time
	queue  []*slotWaiter // FIFO; runs giving their slot up go to the front
	ready  bool          // in fairSlots.ready
}

type slotWaiter struct {
	ch      chan struct{} // closed when the slot is handed over
	granted bool          // under fairSlots.mu
}

type fairSlots struct {
	n       atomic.Int64 // slots taken
	max     int64
	waiting atomic.Int64 // runs queued

	mu      sync.Mutex
	apps    map[string]*share
	ready   []*share // apps with queued runs
	weights map[string]float64
	defW    float64 // the weight of an app not in weights
}

func newFairSlots(max int) *fairSlots {
	return &fairSlots{max: int64(max), apps: map[string]*share{}, weights: map[string]float64{}, defW: 1}
}

// share returns app's account, creating it.
func (s *fairSlots) share(app string) *share {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		w, ok := s.weights[app]
		if !ok {
			w = s.defW
		}
		a = &share{name: app, weight: w, at: time.Now()}
		s.apps[app] = a
	}
	return a
}

// setWeights sets the apps' weights; apps not named, and weights ≤ 0,
// get def (≤ 0: 1).
func (s *fairSlots) setWeights(weights map[string]float64, def float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if def <= 0 {
		def = 1
	}
	s.weights, s.defW = map[string]float64{}, def
	for app, w := range weights {
		if w > 0 {
			s.weights[app] = w
		}
	}
	for name, a := range s.apps {
		a.weight = def
		if w, ok := s.weights[name]; ok {
			a.weight = w
		}
	}
}

// SetAppWeights sets the weights of apps' shares of the guest slots,
// process-wide (the PoP configuration's apps.NAME.weight); an app not
// named, or with a weight ≤ 0, has weight def (≤ 0: 1).
func SetAppWeights(weights map[string]float64, def float64) { guestSlots().setWeights(weights, def) }

func (s *fairSlots) tryAcquire() bool {
	for {
		n := s.n.Load()
		if n >= s.max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// charge adds cpu to a's recent CPU time.
func (a *share) charge(cpu time.Duration) {
	if a != nil && cpu > 0 {
		a.pending.Add(int64(cpu))
	}
}

// fold brings a.used up to now (under mu) and returns it per weight.
func (a *share) fold(now time.Time) float64 {
	if dt := now.Sub(a.at); dt > 0 {
		a.used *= math.Exp(-float64(dt) / float64(FairDecay))
		a.at = now
	}
	a.used += float64(a.pending.Swap(0))
	return a.used / a.weight
}

// acquire takes a slot for app a (nil: an app of its own, weight 1),
// waiting at most until expired fires (nil: no limit) or ctx ends; it
// reports which one ended the wait (nil: acquired).
func (s *fairSlots) acquire(ctx context.Context, expired <-chan time.Time, a *share) error {
	if s.waiting.Load() == 0 && s.tryAcquire() {
		return nil
	}
	if a == nil {
		a = s.share("")
	}
	s.mu.Lock()
	s.waiting.Add(1)
	// Counted as waiting before this try: a release after it sees the
	// waiter and dispatches.
	if s.tryAcquire() {
		s.waiting.Add(-1)
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{ch: make(chan struct{})}
	s.enqueue(a, w, false)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-expired:
		s.abandon(a, w)
		return errExpired
	case <-ctx.Done():
		s.abandon(a, w)
		return ctx.Err()
	}
}

// enqueue queues w in a's queue (under mu), at the front if first.
func (s *fairSlots) enqueue(a *share, w *slotWaiter, first bool) {
	if first {
		a.queue = append(a.queue, nil)
		copy(a.queue[1:], a.queue)
		a.queue[0] = w
	} else {
		a.queue = append(a.queue, w)
	}
	if !a.ready {
		a.ready = true
		s.ready = append(s.ready, a)
	}
}

// abandon takes w out of a's queue after its wait ended; a slot handed to
// it meanwhile is passed on.
func (s *fairSlots) abandon(a *share, w *slotWaiter) {
	s.mu.Lock()
	if w.granted {
		s.mu.Unlock()
		s.release()
		return
	}
	for i, x := range a.queue {
		if x == w {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			break
		}
	}
	s.waiting.Add(-1)
	if len(a.queue) == 0 {
		s.unready(a)
	}
	s.mu.Unlock()
}

func (s *fairSlots) unready(a *share) {
	a.ready = false
	for i, x := range s.ready {
		if x == a {
			s.ready = append(s.ready[:i], s.ready[i+1:]...)
			return
		}
	}
}

// best is the ready app with the least recent CPU time per weight (under
// mu), other than not; nil if none.
func (s *fairSlots) best(now time.Time, not *share) (*share, float64) {
	var b *share
	bv := math.Inf(1)
	for _, a := range s.ready {
		if a == not {
			continue
		}
		if v := a.fold(now); v < bv {
			b, bv = a, v
		}
	}
	return b, bv
}

// handTo gives a slot the caller holds (or has counted) to the head of
// a's queue (under mu).
func (s *fairSlots) handTo(a *share) {
	w := a.queue[0]
	a.queue[0] = nil
	a.queue = a.queue[1:]
	if len(a.queue) == 0 {
		s.unready(a)
	}
	s.waiting.Add(-1)
	w.granted = true
	close(w.ch)
}

func (s *fairSlots) release() {
	if s.waiting.Load() == 0 {
		s.n.Add(-1)
		if s.waiting.Load() == 0 {
			return
		}
		// A run began waiting meanwhile: it may have queued before
		// this slot was free.
		s.mu.Lock()
		if len(s.ready) > 0 && s.tryAcquire() {
			a, _ := s.best(time.Now(), nil)
			s.handTo(a)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if len(s.ready) == 0 {
		s.n.Add(-1)
		s.mu.Unlock()
		return
	}
	a, _ := s.best(time.Now(), nil)
	s.handTo(a) // the slot passes on: n stays
	s.mu.Unlock()
}

// cede is called at a yield point of a guest of app a that has held its
// slot for at least FairSlice: if a run of an app with less recent CPU time
// per weight waits, the slot goes to it, the caller is queued at the head
// of a's queue and cede returns the channel closed when it has a slot
// again; otherwise nil. The wait is not cancellable, like the one after a
// blocking host call: a run in the middle of guest code cannot leave
// without a slot, and fair dispatch bounds the wait.
func (s *fairSlots) cede(a *share, now time.Time) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, bv := s.best(now, a)
	if b == nil || bv >= a.fold(now) {
		return nil
	}
	w := &slotWaiter{ch: make(chan struct{})}
	s.waiting.Add(1)
	s.enqueue(a, w, true)
	s.handTo(b)
	return w.ch
}
